/**
 * Kiosk stations (issue #10 part 7). Two sides:
 * - `/v1/pools/{name}/stations` (admin, operator): create one per kiosk (`{id, url}`, the secret in the
 *   URL's fragment, shown once), list them, and revoke one (`DELETE …/stations/{id}`, which also ends the
 *   session it is showing).
 * - `/station/{id}` and below (the kiosk browser, no API key): the page (public/station), and what it asks
 *   with `Authorization: Station <secret>`: its pictures (`/info`), a desktop (`POST /sessions`, the pool's
 *   own hand-out), whether that session still lives, and Finish. Hidden from the OpenAPI document like
 *   /ops: it is a browser UI, not part of the REST contract.
 * Served by the API rather than the gateway: a desktop comes from the pool's hand-out, which is the API's,
 * and the gateway holds no station or pool; the page embeds the gateway's own console page in a frame.
 */
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { Station, StationCreate, StationGrant, StationInfo, StationSessionState } from '@porthole/contracts'
import { ConflictError, NotFoundError, PortholeError } from '@porthole/contracts/errors'
import { requireRole } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { errors } from '../schemas.js'
import { stationPrincipal, type PoolsPort } from './pools-port.js'
import { StationStore, type StoredStation } from './store.js'

/** services/api/public/station, from dist/src/stations (compiled) or src/stations (tsx). */
const PUBLIC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', ...(import.meta.url.includes('/dist/') ? ['..'] : []), 'public', 'station')
const ASSETS: Record<string, string> = { 'station.js': 'text/javascript; charset=utf-8', 'machine.js': 'text/javascript; charset=utf-8', 'station.css': 'text/css; charset=utf-8' }
/** How long a hand-out may hold a station's slot before another touch may try again. */
const HOLD_MS = 60_000
const hide = { hide: true }
const PoolParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) })
const StationParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }), id: Type.String({ format: 'uuid' }) })
const PageParams = Type.Object({ id: Type.String({ format: 'uuid' }) })
const SessionParams = Type.Object({ id: Type.String({ format: 'uuid' }), sessionId: Type.String({ format: 'uuid' }) })

function view (s: StoredStation, sessionId: string | undefined): Station {
  const { secretHash: _, ...rest } = s
  return sessionId === undefined ? rest : { ...rest, sessionId }
}

/** The origins of a pool's pictures, for the page's img-src (each checked to be http or https). */
function pictureOrigins (attract: readonly string[]): string[] {
  const out = new Set<string>()
  for (const a of attract) {
    try {
      const u = new URL(a)
      if (u.protocol === 'https:' || u.protocol === 'http:') out.add(u.origin)
    } catch { /* not a URL: the page shows nothing for it */ }
  }
  return [...out]
}

/** The page's CSP: its own scripts and styles, the pool's pictures, the gateway's console page in a frame, nothing else. */
function stationCsp (gatewayOrigin: string, pictures: readonly string[]): string {
  return [
    "default-src 'none'", "script-src 'self'", "style-src 'self'", `img-src 'self' data: ${pictures.join(' ')}`.trim(),
    "connect-src 'self'", `frame-src ${gatewayOrigin}`, "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"
  ].join('; ')
}

function pageHeaders (reply: FastifyReply, csp: string): void {
  reply.header('content-security-policy', csp)
  reply.header('x-content-type-options', 'nosniff')
  reply.header('referrer-policy', 'no-referrer')
  reply.header('x-frame-options', 'DENY')
  reply.header('cache-control', 'no-store')
}

/** `/v1/pools/{name}/stations`: registered inside the /v1 scope (API keys). */
export function stationAdminRoutes (ctx: Ctx, pools: PoolsPort): FastifyPluginAsyncTypebox {
  const store = new StationStore(ctx.redis, ctx.ns)
  return async (app) => {
    app.post('/pools/:name/stations', {
      schema: { tags: ['pools'], summary: 'create a kiosk station of a pool (admin, operator): its URL (the secret in the fragment) is shown once', params: PoolParams, body: StationCreate, response: { 201: StationGrant, ...errors(404) } }
    }, async (req, reply) => {
      const p = requireRole(req, 'admin', 'operator')
      const pool = await pools.pool(req.params.name)
      if (pool === undefined) throw new NotFoundError('pool')
      const { station, secret } = await store.create({ pool: pool.name, tenantId: pool.tenantId, createdBy: p.id, ...(req.body.name === undefined ? {} : { name: req.body.name }), ...(req.body.ttlDays === undefined ? {} : { ttlDays: req.body.ttlDays }) })
      await audit(ctx, req, p, { action: 'station.create', result: `ok: station ${station.id} of pool ${pool.name}`, tenantId: pool.tenantId })
      const base = (ctx.config.PUBLIC_API_URL ?? `${req.protocol}://${req.host}`).replace(/\/+$/, '')
      const out: StationGrant = { id: station.id, url: `${base}/station/${station.id}#${secret}`, expiresAt: station.expiresAt }
      return reply.code(201).header('cache-control', 'no-store').send(out)
    })

    app.get('/pools/:name/stations', {
      schema: { tags: ['pools'], summary: "a pool's kiosk stations (admin, operator); never their secrets", params: PoolParams, response: { 200: Type.Array(Station), ...errors(404) } }
    }, async (req) => {
      requireRole(req, 'admin', 'operator')
      if (await pools.pool(req.params.name) === undefined) throw new NotFoundError('pool')
      const list = await store.list(req.params.name)
      return await Promise.all(list.map(async s => view(s, (await store.session(s.id))?.sessionId)))
    })

    app.delete('/pools/:name/stations/:id', {
      schema: { tags: ['pools'], summary: 'revoke a kiosk station (admin, operator): its URL stops working and the session it shows ends', params: StationParams, response: { 204: Type.Null(), ...errors(404) } }
    }, async (req, reply) => {
      const p = requireRole(req, 'admin', 'operator')
      const s = await store.get(req.params.id)
      if (s === undefined || s.pool !== req.params.name) throw new NotFoundError('station')
      const gone = await store.delete(s.id)
      const ended = gone !== false && gone.session !== undefined ? await endConsole(ctx, gone.session.sessionId) : false
      await audit(ctx, req, p, { action: 'station.delete', result: ended ? 'ok; its session was ended' : 'ok', tenantId: s.tenantId, ...(ended && gone !== false && gone.session !== undefined ? { sessionId: gone.session.sessionId, serverId: gone.session.serverId } : {}) })
      return reply.code(204).send(null)
    })
  }
}

/** Revokes a console session (its viewer closes; the pool disposes of its VM); false when it was gone or revoked already. */
async function endConsole (ctx: Ctx, sessionId: string): Promise<boolean> {
  const c = await ctx.sessions.get(sessionId)
  return c === undefined ? false : await ctx.sessions.revoke(c)
}

/** `/station/...`: the kiosk's page and its requests (outside /v1: no API key, the station's secret). */
export function stationPageRoutes (ctx: Ctx, pools: PoolsPort): FastifyPluginAsyncTypebox {
  const store = new StationStore(ctx.redis, ctx.ns)
  const gatewayOrigin = new URL(ctx.config.PUBLIC_GATEWAY_URL).origin
  const files = new Map<string, Promise<Buffer>>()
  const file = async (name: string): Promise<Buffer> => {
    let f = files.get(name)
    if (f === undefined) { f = readFile(join(PUBLIC, name)); files.set(name, f) }
    return await f
  }

  /** The station this request's secret opens, or a 401 saying plainly why not. */
  const opened = async (req: FastifyRequest, id: string): Promise<StoredStation> => {
    await ctx.authFailures.check(req.ip)
    const m = /^Station\s+([A-Za-z0-9_-]{20,100})\s*$/.exec(req.headers.authorization ?? '')
    const r = m === null ? undefined : await store.open(id, m[1] as string)
    if (r?.ok === true) return r.station
    if (r?.ok === false && r.reason === 'expired') {
      throw new PortholeError('unauthorized', `this station's link expired at ${r.expiresAt ?? '?'}: ask the staff for a new station link`, { details: { station: 'expired' } })
    }
    await ctx.authFailures.record(req.ip)
    throw new PortholeError('unauthorized', 'this station link is not valid (revoked, or not complete): ask the staff for a new station link', { details: { station: m === null ? 'missing' : 'unknown' } })
  }

  return async (app) => {
    app.get('/station/:id', { schema: { ...hide, params: PageParams } }, async (req, reply) => {
      // The pictures' origins, so that the CSP admits them and nothing else; by id alone (the page is the same for every station).
      const s = await store.get(req.params.id)
      const pool = s === undefined ? undefined : await pools.pool(s.pool).catch(() => undefined)
      pageHeaders(reply, stationCsp(gatewayOrigin, pictureOrigins(pool?.attract ?? [])))
      return await reply.type('text/html; charset=utf-8').send(await file('index.html'))
    })
    app.get('/station/assets/:name', { schema: { ...hide, params: Type.Object({ name: Type.String({ maxLength: 40 }) }) } }, async (req, reply) => {
      const type = ASSETS[req.params.name]
      if (type === undefined) throw new NotFoundError('asset')
      pageHeaders(reply, "default-src 'none'")
      return await reply.type(type).send(await file(req.params.name))
    })

    app.get('/station/:id/info', { schema: { ...hide, params: PageParams, response: { 200: StationInfo } } }, async (req, reply) => {
      const s = await opened(req, req.params.id)
      const pool = await pools.pool(s.pool)
      if (pool === undefined) throw new PortholeError('unauthorized', `this station's pool ${s.pool} no longer exists: ask the staff for a new station link`, { details: { station: 'pool-gone' } })
      const cur = await store.session(s.id)
      const out: StationInfo = { name: s.name, pool: s.pool, attract: pool.attract, ...(cur === undefined ? {} : { session: { sessionId: cur.sessionId, expiresAt: cur.expiresAt } }) }
      return await reply.header('cache-control', 'no-store').send(out)
    })

    app.post('/station/:id/sessions', { schema: { ...hide, params: PageParams } }, async (req, reply) => {
      const s = await opened(req, req.params.id)
      const cur = await store.session(s.id)
      if (cur !== undefined && (await sessionState(cur.sessionId, cur.serverId)).state === 'live') {
        throw new PortholeError('conflict', 'this station is showing a desktop already: finish it first', { details: { sessionId: cur.sessionId } })
      }
      if (cur !== undefined) await store.clearSession(s.id, cur.sessionId)
      if (!await store.hold(s.id, HOLD_MS)) throw new ConflictError('a desktop is being started for this station already')
      let d
      try {
        d = await pools.handOut(req, s)
      } catch (err) {
        await store.clearSession(s.id)
        throw err
      }
      await store.setSession(s.id, { sessionId: d.sessionId, serverId: d.serverId, expiresAt: d.expiresAt })
      await audit(ctx, req, stationPrincipal(s), { action: 'station.session', result: `ok: station ${s.id}`, sessionId: d.sessionId, serverId: d.serverId })
      return await reply.code(201).header('cache-control', 'no-store').send({ sessionId: d.sessionId, url: d.url, expiresAt: d.expiresAt })
    })

    /** Live while the station still shows it and its console session and VM are there. */
    const sessionState = async (sessionId: string, serverId: string, now = Date.now()): Promise<StationSessionState> => {
      const c = await ctx.sessions.get(sessionId)
      if (c === undefined) return { sessionId, state: 'ended', reason: 'gone' }
      if (c.revokedAt !== undefined) return { sessionId, state: 'ended', reason: 'revoked', expiresAt: c.expiresAt }
      if (Date.parse(c.expiresAt) <= now) return { sessionId, state: 'ended', reason: 'expired', expiresAt: c.expiresAt }
      if (await ctx.servers.get(serverId) === undefined) return { sessionId, state: 'ended', reason: 'gone', expiresAt: c.expiresAt }
      return { sessionId, state: 'live', expiresAt: c.expiresAt }
    }

    app.get('/station/:id/sessions/:sessionId', { schema: { ...hide, params: SessionParams, response: { 200: StationSessionState } } }, async (req, reply) => {
      const s = await opened(req, req.params.id)
      const cur = await store.session(s.id)
      reply.header('cache-control', 'no-store')
      if (cur?.sessionId !== req.params.sessionId) return { sessionId: req.params.sessionId, state: 'ended', reason: 'finished' } satisfies StationSessionState
      const st = await sessionState(cur.sessionId, cur.serverId)
      if (st.state === 'ended') await store.clearSession(s.id, cur.sessionId)
      return st
    })

    app.post('/station/:id/sessions/:sessionId/finish', { schema: { ...hide, params: SessionParams } }, async (req, reply) => {
      const s = await opened(req, req.params.id)
      const cur = await store.session(s.id)
      // Only the station's own session: a session id of anybody else's ends nothing.
      if (cur?.sessionId === req.params.sessionId) {
        const ended = await endConsole(ctx, cur.sessionId)
        await store.clearSession(s.id, cur.sessionId)
        await audit(ctx, req, stationPrincipal(s), { action: 'station.finish', result: ended ? 'ok' : 'ok; it had ended already', sessionId: cur.sessionId, serverId: cur.serverId })
      }
      return await reply.code(204).send()
    })
  }
}
