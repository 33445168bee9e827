/**
 * Kiosk pools: `POST/GET /v1/pools`, `GET/PATCH/DELETE /v1/pools/{name}` (admins and operators; customers read
 * their own tenant's) and the hand-out, `POST /v1/pools/{name}/sessions` (the pool's tenant's keys, kiosk keys).
 *
 * A new or changed pool's template is checked where libvirt is, by the agents' pool controller: the API stores
 * the pool as `checking` (which writes a `changed` event), waits for the controller's `checked` or `refused`
 * event, and answers 201/200, or a problem that says what is wrong with the template.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { DEFAULT_POOL_IDLE_SECONDS, DEFAULT_POOL_MAX_SESSION_SECONDS, PoolCreate, PoolName, PoolPatch, PoolSession, PoolView, type Pool } from '@porthole/contracts'
import { ConflictError, NotFoundError, PortholeError, ValidationError } from '@porthole/contracts/errors'
import { PoolStore, type StreamEvent } from '@porthole/shared/store'
import { KIOSK_ROUTE, assertVisible, principal, requireRole, tenantScope, type Principal } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { handOut } from '../pools/handout.js'
import { StationStore } from '../stations/store.js'
import { errors } from '../schemas.js'

const NameParams = Type.Object({ name: PoolName })

/** A template the controller refused: 422 with its reason. */
class TemplateRefusedError extends PortholeError {
  constructor (pool: string, reason: string) { super('invalid', `pool ${pool}: template refused: ${reason}`, { status: 422, details: { field: 'template' } }) }
}

/**
 * Runs `change` (a write that sets the pool `checking`) and waits for the controller's verdict on it: the
 * outcome event of the pool, or undefined when none came within POOL_CHECK_WAIT_SECONDS.
 */
async function checkedAfter (ctx: Ctx, name: string, change: () => Promise<Pool | undefined>): Promise<{ pool: Pool | undefined, verdict?: { ok: boolean, reason?: string } }> {
  let settle: (v: { ok: boolean, reason?: string } | undefined) => void = () => {}
  const verdict = new Promise<{ ok: boolean, reason?: string } | undefined>(resolve => { settle = resolve })
  // Subscribed before the write: the verdict cannot come before we listen.
  const unsubscribe = ctx.events.subscribe((e: StreamEvent) => {
    if (e.type !== 'pool' || e.data.pool !== name) return
    if (e.data.event === 'checked') settle({ ok: true })
    else if (e.data.event === 'refused') settle({ ok: false, ...(e.data.reason === undefined ? {} : { reason: e.data.reason }) })
  })
  const t = setTimeout(() => settle(undefined), ctx.config.POOL_CHECK_WAIT_SECONDS * 1000)
  try {
    const pool = await change()
    if (pool === undefined) return { pool }
    const v = await verdict
    return v === undefined ? { pool } : { pool, verdict: v }
  } finally {
    clearTimeout(t)
    unsubscribe()
  }
}

const noController = (name: string): PortholeError =>
  new PortholeError('unavailable', `pool ${name}: no pool controller checked the template in time (is an agents process with kvm and POOL_OVERLAY_DIR running?)`, { status: 503 })

/** A pool as `p` may see it: customers without its template's domain name and hooks (as views.ts hides domains). */
async function viewFor (ctx: Ctx, p: Principal, pool: Pool): Promise<PoolView> {
  const v = await ctx.pools.view(pool)
  if (tenantScope(p) === undefined) return v
  const { template: _t, hooks: _h, ...rest } = v
  return rest
}

export function poolRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post('/pools', {
      schema: {
        tags: ['pools'],
        summary: 'create a kiosk pool (admin, operator): its template is checked where libvirt is before the answer',
        description: '201 once the agents checked the template (a defined domain whose first disk is a qcow2 image without internal snapshots and without a backing file); 422 naming what is wrong; 409 when the name is taken.',
        body: PoolCreate,
        response: { 201: PoolView, ...errors(404, 409, 422) }
      }
    }, async (req, reply) => {
      const p = requireRole(req, 'admin', 'operator')
      const b = req.body
      if (await ctx.tenants.get(b.tenantId) === undefined) throw new ValidationError(`tenantId: no tenant ${b.tenantId}`, 'tenantId')
      let taken = false
      const { pool, verdict } = await checkedAfter(ctx, b.name, async () => {
        const created = await ctx.pools.create(b, { idleTimeoutSeconds: DEFAULT_POOL_IDLE_SECONDS, maxSessionSeconds: DEFAULT_POOL_MAX_SESSION_SECONDS })
        taken = created === undefined
        return created
      })
      if (taken || pool === undefined) throw new ConflictError(`a pool named ${b.name} exists already`)
      if (verdict?.ok !== true) {
        // Nothing was cloned of a pool whose template did not pass: it goes, and the name is free again.
        await ctx.pools.forget(b.name)
        await audit(ctx, req, p, { action: 'pool.create', result: 'refused', tenantId: b.tenantId })
        throw verdict === undefined ? noController(b.name) : new TemplateRefusedError(b.name, verdict.reason ?? 'unknown')
      }
      await audit(ctx, req, p, { action: 'pool.create', result: 'ok', tenantId: b.tenantId })
      const now = await ctx.pools.get(b.name) ?? pool
      return reply.code(201).header('location', `/v1/pools/${b.name}`).send(await ctx.pools.view(now))
    })

    app.get('/pools', {
      schema: { tags: ['pools'], summary: 'kiosk pools (customers: their own tenant\'s)', response: { 200: Type.Array(PoolView), ...errors() } }
    }, async (req) => {
      const p = principal(req)
      return await Promise.all((await ctx.pools.list(tenantScope(p))).map(async pool => await viewFor(ctx, p, pool)))
    })

    app.get('/pools/:name', {
      schema: { tags: ['pools'], summary: 'a kiosk pool: its spec, state, last error and clone counts', params: NameParams, response: { 200: PoolView, ...errors(404) } }
    }, async (req) => {
      const p = principal(req)
      const pool = assertVisible(p, 'pool', await ctx.pools.get(req.params.name))
      return await viewFor(ctx, p, pool)
    })

    app.patch('/pools/:name', {
      schema: {
        tags: ['pools'],
        summary: 'change a kiosk pool (admin, operator): a new template or hooks, or any change of a failing pool, has the template checked again (the warm clones remade; a failing pool refills when it passes); size, pictures and timeouts apply in place',
        params: NameParams,
        body: PoolPatch,
        response: { 200: PoolView, ...errors(404, 422) }
      }
    }, async (req) => {
      const p = requireRole(req, 'admin', 'operator')
      const before = await ctx.pools.get(req.params.name)
      if (before === undefined || before.state === 'deleting') throw new NotFoundError('pool')
      if (!PoolStore.rechecks(before, req.body)) {
        // Size, pictures, timeouts: applied in place, the warm clones kept (the controller follows the new size).
        const changed = await ctx.pools.change(before, req.body, false)
        if (changed === undefined) throw new NotFoundError('pool')
        await audit(ctx, req, p, { action: 'pool.update', result: 'ok', tenantId: before.tenantId })
        return await ctx.pools.view(changed)
      }
      const { pool, verdict } = await checkedAfter(ctx, before.name, async () => await ctx.pools.change(before, req.body, true))
      if (pool === undefined) throw new NotFoundError('pool')
      await audit(ctx, req, p, { action: 'pool.update', result: verdict?.ok === true ? 'ok' : 'refused', tenantId: before.tenantId })
      // A refused template leaves the pool failing (no refill) with the reason as its last error.
      if (verdict === undefined) throw noController(before.name)
      if (!verdict.ok) throw new TemplateRefusedError(before.name, verdict.reason ?? 'unknown')
      return await ctx.pools.view(await ctx.pools.get(before.name) ?? pool)
    })

    app.delete('/pools/:name', {
      schema: { tags: ['pools'], summary: 'delete a kiosk pool (admin, operator): its clones are destroyed, live sessions included, and its kiosk stations removed', params: NameParams, response: { 204: Type.Null(), ...errors(404) } }
    }, async (req, reply) => {
      const p = requireRole(req, 'admin', 'operator')
      const pool = await ctx.pools.get(req.params.name)
      if (pool === undefined || pool.state === 'deleting') throw new NotFoundError('pool')
      await ctx.pools.markDeleting(pool)
      // Its stations go with it: their links would otherwise open a page that can never hand out, and come back
      // to life for a new pool of the same name (their sessions end with the pool's clones).
      const stations = new StationStore(ctx.redis, ctx.ns)
      const removed = (await Promise.all((await stations.list(pool.name)).map(async s => await stations.delete(s.id)))).filter(r => r !== false).length
      await audit(ctx, req, p, { action: 'pool.delete', result: removed === 0 ? 'ok' : `ok; ${removed} station(s) removed`, tenantId: pool.tenantId })
      return reply.code(204).send(null)
    })

    app.post('/pools/:name/sessions', {
      config: KIOSK_ROUTE,
      schema: {
        tags: ['pools'],
        summary: "a clean VM's console in one call (the pool's tenant's keys, kiosk keys)",
        description: 'Claims one ready clone (never handed to anybody else, destroyed after use) and answers 201 with its console URL. An empty pool answers 503 with `Retry-After`, or with `?wait=N` waits up to N seconds for a clone first.',
        params: NameParams,
        querystring: Type.Object({
          wait: Type.Optional(Type.Integer({ minimum: 0, maximum: ctx.config.MAX_WAIT_SECONDS, description: `seconds to wait for a ready clone when none is (default 0, at most ${ctx.config.MAX_WAIT_SECONDS})` }))
        }, { additionalProperties: false }),
        response: { 201: PoolSession, ...errors(404, 502, 504) }
      }
    }, async (req, reply) => {
      const p = principal(req)
      const ac = new AbortController()
      const onClose = (): void => { if (!reply.raw.writableEnded) ac.abort() }
      reply.raw.once('close', onClose)
      try {
        const grant = await handOut(ctx, req, p, req.params.name, { waitSeconds: req.query.wait ?? 0, signal: ac.signal })
        return await reply.code(201).header('cache-control', 'no-store').header('location', `/v1/console-sessions/${grant.sessionId}`).send(grant)
      } finally {
        reply.raw.removeListener('close', onClose)
      }
    })
  }
}
