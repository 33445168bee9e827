/**
 * The kiosk hand-out: a clean VM's console in one call. The claim is one Lua step in Redis (PoolStore.claim: a
 * clone is taken by exactly one request, ever); the console is then asked for the normal way (a console job,
 * through the receiver, the agent and the gateway), with the pool's session limit as its lifetime and its idle
 * timeout for the gateway. Nothing slow (libvirt, qemu-img) is on this path: the pool controller in the agents
 * refills on the `handed-out` event this step writes, and destroys the clone when its session ends.
 *
 * `POST /v1/pools/{name}/sessions` calls `handOut`; so may any route that hands out on a pool's behalf (a kiosk
 * station), with the identity it hands out for.
 */
import type { FastifyRequest } from 'fastify'
import { isTerminal, type JobRecord, type Pool, type PoolClone, type PoolSession } from '@porthole/contracts'
import { NotFoundError, PortholeError } from '@porthole/contracts/errors'
import type { StreamEvent } from '@porthole/shared/store'
import { assertVisible, type Principal } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { startJob, takeConsoleUrl } from '../jobs.js'
import { jobFailureError } from '../problem.js'

/** An empty pool: 503 with `Retry-After` (seconds) in the header and the body. */
export class PoolEmptyError extends PortholeError {
  constructor (pool: string, starting: number, retryAfter: number) {
    super('unavailable', `pool ${pool} has no ready desktop now (${starting} starting); retry after ${retryAfter} s`, { status: 503, retryable: true, details: { pool, retryAfter } })
  }
}

export interface HandOutOptions {
  /** Seconds to wait for a clone when none is ready (`?wait=`; default 0: answer 503 at once). */
  waitSeconds?: number
  /** Ends a wait early (the client went away). */
  signal?: AbortSignal
}

/** The pool `p` may hand out from: its tenant's keys (customer, kiosk), admins and operators; 404 otherwise. */
async function poolFor (ctx: Ctx, p: Principal, name: string): Promise<Pool> {
  const pool = assertVisible(p, 'pool', await ctx.pools.get(name))
  if (pool.state === 'deleting') throw new NotFoundError('pool')
  return pool
}

/**
 * Hands out one clean clone of pool `name` to `p`: claims it, makes its console and answers its URL. A clone
 * whose console cannot be made is never handed to anybody else: it is marked for disposal.
 */
export async function handOut (ctx: Ctx, req: FastifyRequest, p: Principal, name: string, o: HandOutOptions = {}): Promise<PoolSession> {
  const pool = await poolFor(ctx, p, name)
  const started = process.hrtime.bigint()
  const clone = await claimWaiting(ctx, pool, Date.now() + (o.waitSeconds ?? 0) * 1000, o.signal)
  if (clone === undefined) {
    ctx.metrics.poolHandouts.inc({ pool: pool.name, outcome: 'miss' })
    await ctx.pools.recordMiss(pool)
    const view = await ctx.pools.view(pool)
    await audit(ctx, req, p, { action: 'pool.hand-out', result: 'empty', tenantId: pool.tenantId })
    throw new PoolEmptyError(pool.name, view.starting, 2)
  }
  try {
    const grant = await consoleOf(ctx, req, p, pool, clone)
    ctx.metrics.poolHandouts.inc({ pool: pool.name, outcome: 'hit' })
    ctx.metrics.poolHandoutSeconds.observe({ pool: pool.name }, Number(process.hrtime.bigint() - started) / 1e9)
    await audit(ctx, req, p, { action: 'pool.hand-out', result: 'ok', serverId: clone.serverId, sessionId: grant.sessionId, tenantId: pool.tenantId })
    return grant
  } catch (err) {
    ctx.metrics.poolHandouts.inc({ pool: pool.name, outcome: 'failed' })
    // Taken once, never given again: the controller destroys it (its next reconcile) and refills the slot.
    await ctx.pools.startDisposal(pool, clone.name, 'claim-failed').catch(() => {})
    await audit(ctx, req, p, { action: 'pool.hand-out', result: 'failed', serverId: clone.serverId, tenantId: pool.tenantId })
    throw err
  }
}

/** The claimed clone's console, bound to it; throws (and the clone is disposed of) when it cannot be made. */
async function consoleOf (ctx: Ctx, req: FastifyRequest, p: Principal, pool: Pool, clone: PoolClone): Promise<PoolSession> {
  const server = await ctx.servers.get(clone.serverId)
  if (server === undefined) throw new PortholeError('unavailable', `pool ${pool.name}'s clone ${clone.name} has no server record`, { status: 503 })
  const { job, watch } = await startJob(ctx, req, p, {
    kind: 'console',
    server,
    watch: true,
    console: { protocol: 'vnc', ttlSeconds: pool.maxSessionSeconds, singleUse: false, renewable: false, maxTotalSeconds: pool.maxSessionSeconds, idleSeconds: pool.idleTimeoutSeconds }
  })
  const waitMs = ctx.config.JOB_DEADLINE_CONSOLE_SECONDS * 1000
  const rec: JobRecord = (await (watch !== undefined ? watch.wait(waitMs) : ctx.waiter.wait(job.id, waitMs))) ?? job
  if (rec.kind !== 'console' || rec.state !== 'succeeded' || rec.result === undefined) {
    throw isTerminal(rec.state) ? jobFailureError(rec.id, rec.state, rec.error) : new PortholeError('timeout', `the console of pool ${pool.name}'s clone did not open in time`, { status: 504 })
  }
  const url = await takeConsoleUrl(ctx, rec, p)
  if (url === undefined) throw new PortholeError('unavailable', 'the console URL was not handed over', { status: 503 })
  if (!await ctx.pools.bindSession(pool, clone.name, rec.result.sessionId)) {
    // The controller gave up on the claim meanwhile (it outlived POOL_CLAIM_TIMEOUT_SECONDS): the session goes too.
    const s = await ctx.sessions.get(rec.result.sessionId)
    if (s !== undefined) await ctx.sessions.revoke(s)
    throw new PortholeError('unavailable', `pool ${pool.name}'s clone was reclaimed before its console was ready`, { status: 503 })
  }
  return { sessionId: rec.result.sessionId, url, expiresAt: rec.result.expiresAt, serverId: clone.serverId }
}

/**
 * Claims a ready clone; while there is none and `deadline` has not come, waits for the pool's next `ready`
 * event (the event stream's tail, which every API process follows) and tries again.
 */
async function claimWaiting (ctx: Ctx, pool: Pool, deadline: number, signal?: AbortSignal): Promise<PoolClone | undefined> {
  let woken = false
  let wake = (): void => {}
  const unsubscribe = ctx.events.subscribe((e: StreamEvent) => {
    if (e.type === 'pool' && e.data.pool === pool.name && e.data.event === 'ready') { woken = true; wake() }
  })
  try {
    for (;;) {
      woken = false
      const clone = await ctx.pools.claim(pool)
      const left = deadline - Date.now()
      if (clone !== undefined || left <= 0 || signal?.aborted === true) return clone
      if (woken) continue
      await new Promise<void>(resolve => {
        const t = setTimeout(done, left)
        function done (): void { clearTimeout(t); signal?.removeEventListener('abort', done); resolve() }
        wake = done
        signal?.addEventListener('abort', done, { once: true })
      })
    }
  } finally {
    unsubscribe()
  }
}
