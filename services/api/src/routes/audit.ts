import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { AuditEntry } from '@porthole/contracts'
import { principal, tenantScope } from '../auth.js'
import type { Ctx } from '../context.js'
import { errors } from '../schemas.js'

export function auditRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get('/audit', {
      schema: {
        tags: ['audit'],
        summary: 'the audit log, newest first (customers: their own tenant)',
        description: 'Customers see entries written by other keys (e.g. an operator acting on their server) with the role as `actor` and no `ip`; their own entries are whole.',
        querystring: Type.Object({
          serverId: Type.Optional(Type.String({ format: 'uuid' })),
          tenantId: Type.Optional(Type.String({ format: 'uuid' })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 }))
        }, { additionalProperties: false }),
        response: { 200: Type.Array(AuditEntry), ...errors() }
      }
    }, async (req) => {
      const scope = tenantScope(principal(req))
      const q = req.query
      if (scope !== undefined && q.tenantId !== undefined && q.tenantId !== scope) return []
      const tenantId = scope ?? q.tenantId
      return await ctx.audit.list({
        limit: q.limit ?? 100,
        ...(tenantId === undefined ? {} : { tenantId }),
        ...(q.serverId === undefined ? {} : { serverId: q.serverId })
      })
    })
  }
}
