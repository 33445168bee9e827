/** Live console sessions: list, renew, share and revoke (the gateway holding the socket follows: see console-gateway's viewers.ts). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { randomUUID } from 'node:crypto'
import {
  ConsoleRenewal, ConsoleRenewRequest, ConsoleSessionView, ConsoleShare, ConsoleShareRequest, consoleUrl, MAX_CONSOLE_TTL_SECONDS,
  type ConsoleSession, type ConsoleShareRecord
} from '@porthole/contracts'
import { randomToken, sha256Hex } from '@porthole/shared/crypto'
import { ConflictError, UnsupportedError } from '@porthole/contracts/errors'
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

    app.post('/console-sessions/:id/share', {
      preValidation: async (req) => { if (req.body === undefined || req.body === null) req.body = {} },
      schema: {
        tags: ['console'],
        summary: 'share a live console: a second URL for the same screen',
        description: 'Answers 201 with the share\'s URL, shown once (it carries the share\'s only token). `viewOnly` (default true): its viewers see the screen and nothing they send reaches the server (the gateway drops it). The share ends at its own expiry (default: the session\'s) or with its session; revoking the session ends every share. The session\'s own page lists who is watching (by `label`). Serial consoles cannot be shared (422). Audited as `console-session.share`.',
        params: IdParams,
        body: ConsoleShareRequest,
        response: { 201: ConsoleShare, ...errors(404, 409, 422) }
      }
    }, async (req, reply) => {
      const p = principal(req)
      const s = assertVisible(p, 'console session', await ctx.sessions.get(req.params.id))
      const now = Date.now()
      if (s.revokedAt !== undefined) throw new ConflictError(RENEW_REFUSED.revoked)
      if (Date.parse(s.expiresAt) <= now) throw new ConflictError(RENEW_REFUSED.expired)
      if (s.protocol === 'serial') throw new UnsupportedError('a serial console cannot be shared: its line takes one viewer')
      const token = randomToken(32)
      const ttlMs = req.body.ttlSeconds === undefined ? Date.parse(s.expiresAt) - now : req.body.ttlSeconds * 1000
      const rec: ConsoleShareRecord = {
        id: randomUUID(), sessionId: s.id, tokenHash: sha256Hex(token), viewOnly: req.body.viewOnly ?? true,
        createdAt: new Date(now).toISOString(), createdBy: p.id, expiresAt: new Date(now + ttlMs).toISOString()
      }
      if (req.body.label !== undefined) rec.label = req.body.label
      await ctx.shares.create(rec, now)
      await audit(ctx, req, p, { action: 'console-session.share', result: `ok: ${rec.viewOnly ? 'view-only' : 'interactive'} share ${rec.id}`, serverId: s.serverId, sessionId: s.id, jobId: s.jobId, tenantId: s.tenantId })
      const out: ConsoleShare = { shareId: rec.id, sessionId: s.id, url: consoleUrl(ctx.config.PUBLIC_GATEWAY_URL, s.id, token), viewOnly: rec.viewOnly, expiresAt: rec.expiresAt }
      if (rec.label !== undefined) out.label = rec.label
      return reply.code(201).header('cache-control', 'no-store').send(out)
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
