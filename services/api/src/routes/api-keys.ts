import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { ApiKey, Role, TenantId } from '@porthole/contracts'
import { NotFoundError, ValidationError } from '@porthole/contracts/errors'
import { requireRole } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { revokeApiKey } from '../revocation.js'
import { IdParams, errors } from '../schemas.js'

const ApiKeyCreate = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200 }),
  role: Role,
  tenantId: Type.Optional(TenantId)
}, { additionalProperties: false, description: 'customer and kiosk keys need the tenantId of an existing tenant (a kiosk key may only hand out its tenant\'s pools\' desktops); admin and operator keys have none' })

const ApiKeyCreated = Type.Object({
  ...ApiKey.properties,
  key: Type.String({ description: 'the key itself: shown only in this response, stored only as its SHA-256' })
})

export function apiKeyRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post('/api-keys', {
      schema: { tags: ['api-keys'], summary: 'create an API key (admin); the key is shown once', body: ApiKeyCreate, response: { 201: ApiKeyCreated, ...errors() } }
    }, async (req, reply) => {
      const p = requireRole(req, 'admin')
      const { name, role, tenantId } = req.body
      if (role === 'customer' || role === 'kiosk') {
        if (tenantId === undefined) throw new ValidationError(`a ${role} key needs a tenantId`, 'tenantId')
        if (await ctx.tenants.get(tenantId) === undefined) throw new ValidationError(`tenantId: no tenant ${tenantId}`, 'tenantId')
      } else if (tenantId !== undefined) {
        throw new ValidationError(`tenantId: ${role} keys are not bound to a tenant`, 'tenantId')
      }
      const { record, key } = await ctx.apiKeys.create(tenantId === undefined ? { name, role } : { name, role, tenantId })
      await audit(ctx, req, p, { action: 'api-key.create', result: 'ok', ...(tenantId === undefined ? {} : { tenantId }) })
      return reply.code(201).header('cache-control', 'no-store').send({ ...record, key })
    })

    app.get('/api-keys', {
      schema: { tags: ['api-keys'], summary: 'list API keys (admin); never shows the keys', response: { 200: Type.Array(ApiKey), ...errors() } }
    }, async (req) => {
      requireRole(req, 'admin')
      return await ctx.apiKeys.list()
    })

    app.delete('/api-keys/:id', {
      schema: { tags: ['api-keys'], summary: 'revoke an API key (admin): its event streams end and the consoles it opened close', params: IdParams, response: { 204: Type.Null(), ...errors(404) } }
    }, async (req, reply) => {
      const p = requireRole(req, 'admin')
      if (!await ctx.apiKeys.delete(req.params.id)) throw new NotFoundError('API key')
      // The key's open event streams end at once and the consoles it opened close, not just its next request.
      const { sessions } = await revokeApiKey(ctx, req.params.id)
      await audit(ctx, req, p, { action: 'api-key.delete', result: sessions === 0 ? 'ok' : `ok; ${sessions} console session(s) revoked` })
      return reply.code(204).send(null)
    })
  }
}
