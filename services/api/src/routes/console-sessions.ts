/** Live console sessions: list, renew and revoke (the gateway holding the socket follows: see console-gateway's viewers.ts). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { ConsoleRenewal, ConsoleRenewRequest, ConsoleSessionView, MAX_CONSOLE_TTL_SECONDS, type ConsoleSession } from '@porthole/shared/contracts'
import { ConflictError } from '@porthole/shared/errors'
import { assertVisible, principal, tenantScope } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { IdParams, errors } from '../schemas.js'

function view (s: ConsoleSession, connected: boolean): ConsoleSessionView {
  const v: ConsoleSessionView = { id: s.id, serverId: s.serverId, tenantId: s.tenantId, protocol: s.protocol, createdAt: s.createdAt, expiresAt: s.expiresAt, singleUse: s.singleUse, connected, renewable: s.renewable === true }
  if (s.revokedAt !== undefined) v.revokedAt = s.revokedAt
  if (s.maxExpiresAt !== undefined) v.maxExpiresAt = s.maxExpiresAt
  return v
}

const RENEW_REFUSED = {
  gone: 'this console session has ended; ask for a new console',
  revoked: 'this console session was revoked; ask for a new console',
  expired: 'this console session has expired; ask for a new console',
  'at-limit': 'this console session has reached the longest a console may live (CONSOLE_MAX_TOTAL_SECONDS); ask for a new console'
} as const

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

    app.post('/console-sessions/:id/renew', {
      preValidation: async (req) => { if (req.body === undefined || req.body === null) req.body = {} },
      schema: {
        tags: ['console'],
        summary: 'renew a console session: a live socket stays open until the new expiry',
        description: `The session then expires \`ttlSeconds\` from now (at most ${MAX_CONSOLE_TTL_SECONDS}; default: its first lifetime), never earlier than it did, never later than its \`maxExpiresAt\` (created + CONSOLE_MAX_TOTAL_SECONDS). 409 when it is revoked, expired or at that limit. Every renewal is audited.`,
        params: IdParams,
        body: ConsoleRenewRequest,
        response: { 200: ConsoleRenewal, ...errors(404, 409) }
      }
    }, async (req) => {
      const p = principal(req)
      const s = assertVisible(p, 'console session', await ctx.sessions.get(req.params.id))
      const r = await ctx.sessions.renew(s.id, req.body.ttlSeconds ?? s.ttlSeconds ?? MAX_CONSOLE_TTL_SECONDS)
      await audit(ctx, req, p, { action: 'console-session.renew', result: r.ok ? `ok: until ${r.session.expiresAt}` : r.reason, serverId: s.serverId, sessionId: s.id, jobId: s.jobId, tenantId: s.tenantId })
      if (!r.ok) throw new ConflictError(RENEW_REFUSED[r.reason])
      const out: ConsoleRenewal = { sessionId: s.id, expiresAt: r.session.expiresAt }
      if (r.session.maxExpiresAt !== undefined) out.maxExpiresAt = r.session.maxExpiresAt
      return out
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
