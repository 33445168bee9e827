/**
 * The operators' dashboard at `/ops`: a login form exchanging an operator's or admin's key for a session
 * cookie, the page and its scripts, and the JSON and SSE it reads (`/ops/api/...`, cookie-authenticated, see
 * guard.ts). Hidden from the OpenAPI document: it is a browser UI, not part of the REST contract; its
 * routes are classified in test/security/bola.int.test.ts (OPS_ROUTES).
 */
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import rateLimit from '@fastify/rate-limit'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { JobKind, JobState, type JobEvent } from '@porthole/contracts'
import { NotFoundError, PortholeError } from '@porthole/contracts/errors'
import { keys } from '@porthole/shared/store'
import type { Principal } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { cancelJob, retryJob } from '../job-actions.js'
import { limitError } from '../limits.js'
import { SSE_HEAD } from '../routes/events.js'
import { eventView } from '../views.js'
import { agentsView, findJobs, poolsView, queuesView, serverLookup, withServer } from './data.js'
import { deadLetters, replayDeadLetter } from './dead-letters.js'
import { assertSameOrigin, clearedCookie, cookieOf, opsPrincipal, securityHeaders, sessionCookie } from './guard.js'
import { OpsSessions } from './sessions.js'

/** services/api/public/ops, from dist/src/ops (compiled) or src/ops (tsx). */
const PUBLIC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', ...(import.meta.url.includes('/dist/') ? ['..'] : []), 'public', 'ops')
const ASSETS: Record<string, string> = { 'ops.js': 'text/javascript; charset=utf-8', 'live.js': 'text/javascript; charset=utf-8', 'ops.css': 'text/css; charset=utf-8' }
const Id = Type.Object({ id: Type.String({ format: 'uuid' }) })
const hide = { hide: true }

/** The routes RATE_LIMIT_OPS_SESSION counts: the login (per client address) and the session's API (per session). */
function limited (url: string | undefined): boolean {
  return url === '/ops/login' || (url ?? '').startsWith('/ops/api/')
}

export function opsRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  const sessions = new OpsSessions(ctx.redis, ctx.ns, ctx.config.OPS_SESSION_TTL_SECONDS, ctx.config.PORTHOLE_ADMIN_TOKEN)
  const files = new Map<string, Promise<Buffer>>()
  const file = async (name: string): Promise<Buffer> => {
    let f = files.get(name)
    if (f === undefined) { f = readFile(join(PUBLIC, name)); files.set(name, f) }
    return await f
  }
  return async (app) => {
    app.addHook('onSend', async (_req, reply) => { securityHeaders(reply) })
    // Every /ops/api route but the login needs the session (and, for a change, Origin and CSRF token).
    // By the matched route, not the raw URL: a percent-encoded path reaches the same route.
    app.addHook('onRequest', async (req) => {
      if ((req.routeOptions.url ?? '').startsWith('/ops/api/')) req.principal = await opsPrincipal(sessions, req)
    })
    // Its own limit, counted in Redis for every replica; the hook runs per route, after the session's above.
    const window = ctx.config.RATE_LIMIT_WINDOW_SECONDS
    const max = ctx.config.RATE_LIMIT_OPS_SESSION
    await app.register(rateLimit, {
      redis: ctx.redis,
      nameSpace: `${keys(ctx.ns).requestRate}ops:`,
      timeWindow: window * 1000,
      max,
      allowList: (req) => !limited(req.routeOptions.url),
      keyGenerator: (req) => req.opsSession === undefined ? `ip:${req.ip}` : `session:${req.opsSession.id}`,
      errorResponseBuilder: (req, c) => limitError('requests_per_ops_session', req.opsSession === undefined
        ? `this address tried more than ${c.max} dashboard logins in ${window} s`
        : `this dashboard session made more than ${c.max} requests in ${window} s`, { max, setting: 'RATE_LIMIT_OPS_SESSION', retryAfter: c.ttl / 1000 })
    })
    const who = (req: { principal?: Principal }): Principal => {
      if (req.principal === undefined) throw new PortholeError('unauthorized', 'log in to the dashboard first')
      return req.principal
    }

    app.get('/ops', { schema: hide }, async (_req, reply) => await reply.type('text/html; charset=utf-8').send(await file('index.html')))
    app.get('/ops/assets/:name', { schema: { ...hide, params: Type.Object({ name: Type.String({ maxLength: 40 }) }) } }, async (req, reply) => {
      const type = ASSETS[req.params.name]
      if (type === undefined) throw new NotFoundError('asset')
      return await reply.type(type).send(await file(req.params.name))
    })

    app.post('/ops/login', {
      schema: { ...hide, body: Type.Object({ key: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }) }
    }, async (req, reply) => {
      await ctx.authFailures.check(req.ip)
      let p: Principal
      try {
        p = await ctx.auth.authenticate(`Bearer ${req.body.key}`)
      } catch (err) {
        if (err instanceof PortholeError && err.code === 'unauthorized') await ctx.authFailures.record(req.ip)
        throw err
      }
      // A page of another site must not log a browser in (to a key of its choosing).
      assertSameOrigin(req)
      if (p.role !== 'admin' && p.role !== 'operator') throw new PortholeError('forbidden', 'the dashboard is for operator and admin keys')
      const { token, session } = await sessions.create(p)
      await audit(ctx, req, p, { action: 'ops.login', result: 'ok' })
      reply.header('set-cookie', sessionCookie(req, token, sessions.ttlSeconds))
      return { role: session.role, keyId: session.keyId, csrf: session.csrf, expiresAt: session.expiresAt }
    })

    app.post('/ops/api/logout', { schema: hide }, async (req, reply) => {
      const token = cookieOf(req)
      const ended = token === undefined ? undefined : await sessions.end(token)
      // The session's open event streams end with it, on whichever replica holds them.
      if (ended !== undefined) await ctx.streams.publish({ type: 'ops-session.ended', opsSessionId: ended })
      await audit(ctx, req, who(req), { action: 'ops.logout', result: 'ok' })
      reply.header('set-cookie', clearedCookie(req))
      return reply.code(204).send()
    })

    app.get('/ops/api/session', { schema: hide }, async (req) => {
      const s = req.opsSession
      if (s === undefined) throw new PortholeError('unauthorized', 'log in to the dashboard first')
      return { role: s.role, keyId: s.keyId, csrf: s.csrf, expiresAt: s.expiresAt, namespace: ctx.ns }
    })

    app.get('/ops/api/queues', { schema: hide }, async () => await queuesView(ctx))

    app.get('/ops/api/jobs', {
      schema: {
        ...hide,
        querystring: Type.Object({
          state: Type.Optional(JobState),
          kind: Type.Optional(JobKind),
          agent: Type.Optional(Type.Union([Type.Literal('kvm'), Type.Literal('ipmi'), Type.Literal('ovirt')])),
          tenantId: Type.Optional(Type.String({ format: 'uuid' })),
          serverId: Type.Optional(Type.String({ format: 'uuid' })),
          q: Type.Optional(Type.String({ maxLength: 100 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 }))
        }, { additionalProperties: false })
      }
    }, async (req) => {
      const q = req.query
      return await findJobs(ctx, {
        limit: q.limit ?? 100,
        ...(q.state === undefined ? {} : { state: q.state }),
        ...(q.kind === undefined ? {} : { kind: q.kind }),
        ...(q.agent === undefined ? {} : { agent: q.agent }),
        ...(q.tenantId === undefined ? {} : { tenantId: q.tenantId }),
        ...(q.serverId === undefined ? {} : { serverId: q.serverId }),
        ...(q.q === undefined ? {} : { q: q.q })
      })
    })

    app.get('/ops/api/jobs/:id', { schema: { ...hide, params: Id } }, async (req) => {
      const job = await ctx.jobs.get(req.params.id)
      if (job === undefined) throw new NotFoundError('job')
      return await withServer(serverLookup(ctx), job)
    })
    app.post('/ops/api/jobs/:id/retry', { schema: { ...hide, params: Id } }, async (req, reply) => {
      const { job, replayed } = await retryJob(ctx, req, who(req), req.params.id)
      return reply.code(replayed ? 200 : 201).send(job)
    })
    app.post('/ops/api/jobs/:id/cancel', { schema: { ...hide, params: Id } }, async (req) => await cancelJob(ctx, req, who(req), req.params.id))

    app.get('/ops/api/dead-letters', { schema: hide }, async () => await deadLetters(ctx))
    app.post('/ops/api/dead-letters/replay', {
      schema: { ...hide, body: Type.Object({ lane: Type.Union([Type.Literal('dead'), Type.Literal('dead.interactive')]), messageId: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false }) }
    }, async (req) => {
      const d = await replayDeadLetter(ctx, req.body.lane, req.body.messageId)
      await audit(ctx, req, who(req), { action: 'dead-letter.replay', result: 'ok', ...(d.serverId === undefined ? {} : { serverId: d.serverId }), ...(d.jobId === undefined ? {} : { jobId: d.jobId }), ...(d.tenantId === undefined ? {} : { tenantId: d.tenantId }) })
      return d
    })

    app.get('/ops/api/agents', { schema: hide }, async () => await agentsView(ctx))
    app.get('/ops/api/pools', { schema: hide }, async () => await poolsView(ctx))

    app.get('/ops/api/sessions', { schema: hide }, async () => {
      const live = await ctx.sessions.listLive()
      const connected = await ctx.sessions.connected(live.map(s => s.id))
      const lookup = serverLookup(ctx)
      return await Promise.all(live.map(async (s, i) => ({
        id: s.id, serverId: s.serverId, serverName: (await lookup(s.serverId))?.name, tenantId: s.tenantId, protocol: s.protocol,
        createdAt: s.createdAt, expiresAt: s.expiresAt, singleUse: s.singleUse, connected: connected[i] ?? false, jobId: s.jobId,
        ...(s.revokedAt === undefined ? {} : { revokedAt: s.revokedAt })
      })))
    })
    app.delete('/ops/api/sessions/:id', { schema: { ...hide, params: Id } }, async (req, reply) => {
      const s = await ctx.sessions.get(req.params.id)
      if (s === undefined) throw new NotFoundError('console session')
      const revoked = await ctx.sessions.revoke(s)
      await audit(ctx, req, who(req), { action: 'console-session.revoke', result: revoked ? 'ok' : 'already revoked', serverId: s.serverId, sessionId: s.id, jobId: s.jobId, tenantId: s.tenantId })
      return reply.code(204).send()
    })

    app.get('/ops/api/audit', {
      schema: {
        ...hide,
        querystring: Type.Object({
          serverId: Type.Optional(Type.String({ format: 'uuid' })),
          tenantId: Type.Optional(Type.String({ format: 'uuid' })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 }))
        }, { additionalProperties: false })
      }
    }, async (req) => {
      const q = req.query
      return await ctx.audit.list({ limit: q.limit ?? 100, ...(q.tenantId === undefined ? {} : { tenantId: q.tenantId }), ...(q.serverId === undefined ? {} : { serverId: q.serverId }) })
    })

    app.get('/ops/api/servers', { schema: hide }, async () => (await ctx.servers.list()).map(s => ({ id: s.id, name: s.name, agent: s.agent, tenantId: s.tenantId })))

    app.get('/ops/api/tenants', { schema: hide }, async () => (await ctx.tenants.list()).map(t => ({ id: t.id, name: t.name, suspended: t.suspended === true })))

    // Job events as SSE for the page (live.js). Counted and ended like /v1/events: deleting the key ends it.
    app.get('/ops/api/events', { schema: hide }, async (req, reply) => {
      const p = who(req)
      if (req.method === 'HEAD') return await reply.headers(SSE_HEAD).send()
      const slot = await ctx.streams.admit(p)
      const res = reply.raw
      // Subscribed before the answer starts: "connected" means live, and a failure is still a problem+json answer.
      let live = false
      const stop = await ctx.waiter.feed((e: JobEvent) => {
        if (!live) return
        if (res.writableLength > 1024 * 1024) { res.destroy(); return }
        res.write(`event: job\ndata: ${JSON.stringify(eventView(e))}\n\n`)
      })
      reply.hijack()
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no', 'content-security-policy': "default-src 'none'" })
      res.write(': connected\n\n')
      live = true
      const token = cookieOf(req)
      const beat = setInterval(() => {
        // A session that ended (logout, expiry, its key deleted) ends its stream too.
        void sessions.get(token).then(s => {
          if (s === undefined) { res.write('event: end\ndata: {}\n\n'); res.end(); return }
          res.write(': heartbeat\n\n')
          ctx.streams.renew(res)
        }).catch(() => {})
      }, ctx.config.SSE_HEARTBEAT_SECONDS * 1000)
      ctx.streams.track(slot, p, res, req.opsSession?.id)
      res.once('close', () => { stop(); clearInterval(beat) })
    })
  }
}
