/** Live console sessions: list and revoke (the gateway holding the socket closes it). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { ConsoleSessionView, type ConsoleSession } from '@porthole/contracts'
import { assertVisible, principal, tenantScope } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { IdParams, errors } from '../schemas.js'

function view (s: ConsoleSession, connected: boolean): ConsoleSessionView {
  const v: ConsoleSessionView = { id: s.id, serverId: s.serverId, tenantId: s.tenantId, protocol: s.protocol, createdAt: s.createdAt, expiresAt: s.expiresAt, singleUse: s.singleUse, connected }
  if (s.revokedAt !== undefined) v.revokedAt = s.revokedAt
  return v
}

export function consoleSessionRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get('/console-sessions', {
      schema: {
        tags: ['console'],
        summary: 'console sessions not yet expired (customers: their own)',
        querystring: Type.Object({ serverId: Type.Optional(Type.String({ format: 'uuid' })) }, { additionalProperties: false }),
        response: { 200: Type.Array(ConsoleSessionView), ...errors() }
      }
    }, async (req) => {
      const scope = tenantScope(principal(req))
      const list = await ctx.sessions.listLive({
        ...(scope === undefined ? {} : { tenantId: scope }),
        ...(req.query.serverId === undefined ? {} : { serverId: req.query.serverId })
      })
      const connected = await ctx.sessions.connected(list.map(s => s.id))
      return list.map((s, i) => view(s, connected[i] ?? false))
    })

    app.get('/console-sessions/:id', {
      schema: { tags: ['console'], summary: 'one console session', params: IdParams, response: { 200: ConsoleSessionView, ...errors(404) } }
    }, async (req) => {
      const s = assertVisible(principal(req), 'console session', await ctx.sessions.get(req.params.id))
      const [connected] = await ctx.sessions.connected([s.id])
      return view(s, connected ?? false)
    })

    app.delete('/console-sessions/:id', {
      schema: { tags: ['console'], summary: 'revoke a console session: its URL stops working and a live viewer is disconnected', params: IdParams, response: { 204: Type.Null(), ...errors(404) } }
    }, async (req, reply) => {
      const p = principal(req)
      const s = assertVisible(p, 'console session', await ctx.sessions.get(req.params.id))
      const revoked = await ctx.sessions.revoke(s)
      await audit(ctx, req, p, { action: 'console-session.revoke', result: revoked ? 'ok' : 'already revoked', serverId: s.serverId, sessionId: s.id, jobId: s.jobId, tenantId: s.tenantId })
      return reply.code(204).send(null)
    })
  }
}
