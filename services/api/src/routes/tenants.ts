import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { Tenant } from '@porthole/contracts'
import { NotFoundError } from '@porthole/contracts/errors'
import { requireRole } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { revokeTenant } from '../revocation.js'
import { IdParams, errors } from '../schemas.js'

/** A tenant as shown: `suspended` always present (records from before suspension existed have none). */
function view (t: Tenant): Tenant { return { ...t, suspended: t.suspended === true } }

export function tenantRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post('/tenants', {
      schema: {
        tags: ['tenants'],
        summary: 'create a tenant (admin)',
        body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }),
        response: { 201: Tenant, ...errors() }
      }
    }, async (req, reply) => {
      const p = requireRole(req, 'admin')
      const t = await ctx.tenants.create(req.body.name)
      await audit(ctx, req, p, { action: 'tenant.create', result: 'ok', tenantId: t.id })
      return reply.code(201).header('location', `/v1/tenants/${t.id}`).send(view(t))
    })

    app.get('/tenants', {
      schema: { tags: ['tenants'], summary: 'list tenants (admin)', response: { 200: Type.Array(Tenant), ...errors() } }
    }, async (req) => {
      requireRole(req, 'admin')
      return (await ctx.tenants.list()).map(view)
    })

    app.get('/tenants/:id', {
      schema: { tags: ['tenants'], summary: 'one tenant (admin)', params: IdParams, response: { 200: Tenant, ...errors(404) } }
    }, async (req) => {
      requireRole(req, 'admin')
      const t = await ctx.tenants.get(req.params.id)
      if (t === undefined) throw new NotFoundError('tenant')
      return view(t)
    })

    app.post('/tenants/:id/suspend', {
      schema: {
        tags: ['tenants'],
        summary: "suspend a tenant (admin): its keys are refused, its event streams end, its live consoles close within a second, and no new console opens on its servers",
        params: IdParams,
        response: { 200: Tenant, ...errors(404) }
      }
    }, async (req) => {
      const p = requireRole(req, 'admin')
      const t = await ctx.tenants.setSuspended(req.params.id, true)
      if (t === undefined) throw new NotFoundError('tenant')
      // After the flag is set, so that no console of the tenant can open once this sweep has passed.
      const { sessions } = await revokeTenant(ctx, t.id)
      await audit(ctx, req, p, { action: 'tenant.suspend', result: sessions === 0 ? 'ok' : `ok; ${sessions} console session(s) revoked`, tenantId: t.id })
      return view(t)
    })

    app.post('/tenants/:id/resume', {
      schema: { tags: ['tenants'], summary: "resume a suspended tenant (admin): its keys work again", params: IdParams, response: { 200: Tenant, ...errors(404) } }
    }, async (req) => {
      const p = requireRole(req, 'admin')
      const t = await ctx.tenants.setSuspended(req.params.id, false)
      if (t === undefined) throw new NotFoundError('tenant')
      await audit(ctx, req, p, { action: 'tenant.resume', result: 'ok', tenantId: t.id })
      return view(t)
    })
  }
}
