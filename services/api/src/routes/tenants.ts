import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { Tenant } from '@porthole/shared/contracts'
import { NotFoundError } from '@porthole/shared/errors'
import { requireRole } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { IdParams, errors } from '../schemas.js'

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
      return reply.code(201).header('location', `/v1/tenants/${t.id}`).send(t)
    })

    app.get('/tenants', {
      schema: { tags: ['tenants'], summary: 'list tenants (admin)', response: { 200: Type.Array(Tenant), ...errors() } }
    }, async (req) => {
      requireRole(req, 'admin')
      return await ctx.tenants.list()
    })

    app.get('/tenants/:id', {
      schema: { tags: ['tenants'], summary: 'one tenant (admin)', params: IdParams, response: { 200: Tenant, ...errors(404) } }
    }, async (req) => {
      requireRole(req, 'admin')
      const t = await ctx.tenants.get(req.params.id)
      if (t === undefined) throw new NotFoundError('tenant')
      return t
    })
  }
}
