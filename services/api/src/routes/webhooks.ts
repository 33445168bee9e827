/**
 * Webhooks: a tenant registers a URL and gets a `whsec_` secret once; every matching event is delivered to it,
 * signed (webhooks/deliverer.ts). Customers manage their own tenant's; admins and operators any (naming the
 * tenant when they register one). Another tenant's webhook is a 404.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { EventPattern, TenantId, Webhook, WebhookDelivery } from '@porthole/contracts'
import { ValidationError } from '@porthole/contracts/errors'
import { webhookAad, type StoredWebhook } from '@porthole/shared/store'
import { assertVisible, principal, tenantScope } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { limitError } from '../limits.js'
import { IdParams, errors } from '../schemas.js'
import { checkWebhookUrl } from '../webhooks/url-guard.js'
import { newWebhookSecret } from '../webhooks/sign.js'

const WebhookCreate = Type.Object({
  url: Type.String({ minLength: 1, maxLength: 2000, description: 'http(s) URL on a public address; it gets a POST per event' }),
  events: Type.Optional(Type.Array(EventPattern, { minItems: 1, maxItems: 32, uniqueItems: true, description: 'event types (job.succeeded, console.opened, job.* …); absent: every event' })),
  tenantId: Type.Optional(TenantId)
}, { additionalProperties: false, description: 'customers register for their own tenant; admins and operators name the tenant' })

const WebhookCreated = Type.Object({
  ...Webhook.properties,
  secret: Type.String({ description: 'the signing secret (`whsec_` and base64): shown only in this response, stored sealed' })
})

/** A webhook without its sealed secret. */
function view (w: StoredWebhook): Webhook {
  const { secret: _s, ...rest } = w
  return rest
}

export function webhookRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post('/webhooks', {
      schema: { tags: ['webhooks'], summary: 'register a webhook; its secret is shown once', body: WebhookCreate, response: { 201: WebhookCreated, ...errors(404) } }
    }, async (req, reply) => {
      const p = principal(req)
      const scope = tenantScope(p)
      let tenantId = scope
      if (scope === undefined) {
        if (req.body.tenantId === undefined) throw new ValidationError('tenantId: admins and operators name the tenant the webhook is for', 'tenantId')
        if (await ctx.tenants.get(req.body.tenantId) === undefined) throw new ValidationError(`tenantId: no tenant ${req.body.tenantId}`, 'tenantId')
        tenantId = req.body.tenantId
      } else if (req.body.tenantId !== undefined && req.body.tenantId !== scope) {
        throw new ValidationError('tenantId: a customer key registers webhooks for its own tenant only', 'tenantId')
      }
      if (tenantId === undefined) throw new ValidationError('tenantId: this key has no tenant', 'tenantId')
      const checked = await checkWebhookUrl(req.body.url, ctx.config.WEBHOOK_ALLOW_PRIVATE)
      const max = ctx.config.WEBHOOKS_PER_TENANT
      if (await ctx.webhooks.count(tenantId) >= max) throw limitError('webhooks_per_tenant', 'this tenant has as many webhooks as allowed; delete one first', { max, setting: 'WEBHOOKS_PER_TENANT', retryAfter: 3600 })
      const id = randomUUID()
      const secret = newWebhookSecret()
      const w: StoredWebhook = {
        id,
        tenantId,
        url: checked.url.href,
        ...(req.body.events === undefined ? {} : { events: req.body.events }),
        createdAt: new Date().toISOString(),
        secret: ctx.box.seal(secret, webhookAad(id))
      }
      await ctx.webhooks.create(w)
      await audit(ctx, req, p, { action: 'webhook.create', result: 'ok', tenantId })
      return reply.code(201).header('cache-control', 'no-store').header('location', `/v1/webhooks/${id}`).send({ ...view(w), secret })
    })

    app.get('/webhooks', {
      schema: {
        tags: ['webhooks'],
        summary: 'webhooks (customers: their own tenant\'s); never shows the secrets',
        querystring: Type.Object({ tenantId: Type.Optional(TenantId) }, { additionalProperties: false }),
        response: { 200: Type.Array(Webhook), ...errors() }
      }
    }, async (req) => {
      const scope = tenantScope(principal(req))
      if (scope !== undefined && req.query.tenantId !== undefined && req.query.tenantId !== scope) return []
      return (await ctx.webhooks.list(scope ?? req.query.tenantId)).map(view)
    })

    app.get('/webhooks/:id', {
      schema: { tags: ['webhooks'], summary: 'one webhook', params: IdParams, response: { 200: Webhook, ...errors(404) } }
    }, async (req) => view(assertVisible(principal(req), 'webhook', await ctx.webhooks.get(req.params.id))))

    app.get('/webhooks/:id/deliveries', {
      schema: {
        tags: ['webhooks'],
        summary: "a webhook's deliveries, newest first, each with its attempts and outcome",
        params: IdParams,
        querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })) }, { additionalProperties: false }),
        response: { 200: Type.Array(WebhookDelivery), ...errors(404) }
      }
    }, async (req) => {
      const w = assertVisible(principal(req), 'webhook', await ctx.webhooks.get(req.params.id))
      return await ctx.webhooks.deliveries(w.id, req.query.limit ?? 100)
    })

    app.delete('/webhooks/:id', {
      schema: { tags: ['webhooks'], summary: 'delete a webhook: its pending deliveries are cancelled', params: IdParams, response: { 204: Type.Null(), ...errors(404) } }
    }, async (req, reply) => {
      const p = principal(req)
      const w = assertVisible(p, 'webhook', await ctx.webhooks.get(req.params.id))
      await ctx.webhooks.delete(w)
      await audit(ctx, req, p, { action: 'webhook.delete', result: 'ok', tenantId: w.tenantId })
      return reply.code(204).send(null)
    })
  }
}
