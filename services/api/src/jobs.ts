/** Creating jobs: record (queued), publish with a broker confirm, and undo cleanly when the broker is down. */
import { randomUUID } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { laneOf, names, ttlUntil } from '@porthole/shared/amqp'
import type { Job, JobKind, JobParams, JobRecord, StoredServer } from '@porthole/contracts'
import { PortholeError, UnavailableError, toFailure } from '@porthole/contracts/errors'
import { JobStore, keys, urlHandoverAad } from '@porthole/shared/store'
import type { Principal } from './auth.js'
import { audit, type Ctx } from './context.js'
import { suspendedError, suspendedRevoking } from './revocation.js'
import type { JobWatch } from './waiter.js'

export const IDEMPOTENCY_TTL_SECONDS = 24 * 3600

/** What a caller asks for: the job's kind and what that kind carries (JobParams), for a server. */
export type JobRequest = JobParams & {
  server: StoredServer
  idempotencyKey?: string | undefined
  /** The failed or timed-out job this one retries. */
  retryOf?: string
  /**
   * One job for every caller that names the same scope and key within `ttlSeconds` (a repeat gets the first,
   * `replayed`), as an Idempotency-Key does for one API key's requests; it takes the place of the latter.
   */
  dedupe?: { scope: string, key: string, ttlSeconds: number }
  /** Checked with the job's id and deadline before anything is created: a quota may refuse it (throws). */
  admit?: (job: Job) => Promise<void>
  /** The caller waits for the job: it is listened for from before its publish on (`watch` of the answer). */
  watch?: boolean
}

/** Whether a job recorded under an Idempotency-Key is the one `r` asks for again. */
function sameRequest (first: JobRecord, r: JobRequest): boolean {
  if (first.kind !== r.kind || first.serverId !== r.server.id) return false
  if (first.kind === 'power' && r.kind === 'power') return first.action === r.action
  if (first.kind === 'console' && r.kind === 'console') return first.protocol === r.console.protocol
  return true
}

function deadlineSeconds (ctx: Ctx, kind: JobKind): number {
  switch (kind) {
    case 'power': return ctx.config.JOB_DEADLINE_POWER_SECONDS
    case 'status': return ctx.config.JOB_DEADLINE_STATUS_SECONDS
    case 'console': return ctx.config.JOB_DEADLINE_CONSOLE_SECONDS
  }
}

/**
 * Creates and publishes a job; resolves once the broker has confirmed it. A repeat of an Idempotency-Key
 * (same API key, within 24 h) returns the first job (`replayed: true`) without publishing again.
 */
export async function startJob (ctx: Ctx, req: FastifyRequest, p: Principal, r: JobRequest): Promise<{ job: JobRecord, replayed: boolean, watch?: JobWatch }> {
  const now = new Date()
  const { server: _server, idempotencyKey: _key, admit: _admit, dedupe: _dedupe, watch: _watch, ...params } = r
  const job: Job = {
    ...params,
    id: randomUUID(),
    serverId: r.server.id,
    tenantId: r.server.tenantId,
    requestedBy: p.id,
    createdAt: now.toISOString(),
    deadline: new Date(now.getTime() + deadlineSeconds(ctx, r.kind) * 1000).toISOString(),
    attempt: 1,
    traceId: req.id
  }
  if (r.idempotencyKey !== undefined) job.idempotencyKey = r.idempotencyKey
  if (r.retryOf !== undefined) job.retryOf = r.retryOf
  const idem = r.dedupe ?? (r.idempotencyKey === undefined ? undefined : { scope: p.id, key: r.idempotencyKey, ttlSeconds: IDEMPOTENCY_TTL_SECONDS })
  if (r.admit !== undefined) await r.admit(job)
  const created = await ctx.jobs.create(job, idem)
  const base = { action: `job.${r.kind}${r.kind === 'power' ? '.' + r.action : ''}`, serverId: r.server.id, tenantId: r.server.tenantId }
  if (!created.created) {
    const first = await ctx.jobs.get(created.id)
    if (first !== undefined) {
      // The same key for a different request is a client bug: answering with the first job would mislead it.
      if (!sameRequest(first, r)) {
        throw new PortholeError('invalid', 'this Idempotency-Key was used for a different request', { status: 422, details: { jobId: first.id } })
      }
      // A replay creates nothing: no audit entry either (it would let a client fill the log for free).
      return { job: first, replayed: true }
    }
    // The first job expired while its key lived on: start afresh.
    if (idem !== undefined) await ctx.redis.del(keys(ctx.ns).idempotency(idem.scope, idem.key))
    return await startJob(ctx, req, p, r)
  }
  const log = req.log.child({ jobId: job.id, serverId: job.serverId, traceId: job.traceId })
  const n = names(ctx.ns)
  const watch = r.watch === true ? ctx.waiter.watch(job.id) : undefined
  try {
    // Interactive jobs (status, console) expire with their deadline; power jobs wait in the durable lane.
    await ctx.amqp.publish(n.jobsExchange, n.receiverKeyOf(job.kind), job, laneOf(job.kind) === 'interactive' ? { messageId: job.id, expiration: ttlUntil(job.deadline) } : { messageId: job.id })
  } catch (err) {
    // Leave nothing half-done: the job is failed, and the idempotency key freed so that a retry can succeed.
    watch?.close()
    const failure = err instanceof UnavailableError ? err.toFailure() : toFailure(err)
    await ctx.jobs.transition(job.id, 'failed', { error: failure }).catch(() => {})
    if (idem !== undefined) {
      const k = keys(ctx.ns).idempotency(idem.scope, idem.key)
      if (await ctx.redis.get(k).catch(() => null) === job.id) await ctx.redis.del(k).catch(() => {})
    }
    ctx.metrics.jobsRejected.inc({ kind: r.kind, reason: failure.code })
    log.warn({ err: { message: (err as Error).message, code: failure.code } }, 'job not published')
    await audit(ctx, req, p, { ...base, jobId: job.id, result: failure.code })
    if (err instanceof PortholeError) throw new PortholeError(err.code, err.code === 'unavailable' ? 'the message broker is unavailable; try again shortly' : err.message, { details: { jobId: job.id } })
    throw err
  }
  ctx.metrics.jobsCreated.inc({ kind: r.kind })
  log.info({ kind: job.kind, action: job.kind === 'power' ? job.action : undefined }, 'job published')
  // Status reads change nothing and portals poll them: auditing each would push real actions out of the log.
  if (r.kind !== 'status') await audit(ctx, req, p, { ...base, jobId: job.id, result: 'accepted' })
  // The record as created: a caller that waits reads it again anyway, one that does not gets it as accepted.
  return { job: JobStore.initialRecord(job), replayed: false, ...(watch === undefined ? {} : { watch }) }
}


/**
 * The URL of a finished console job, delivered once and only to the key that asked for it: the gateway left
 * it sealed in Redis (it carries the session's token), and taking it removes it. Undefined when it was
 * delivered already, or the caller is not the requester, or the tenant is suspended (with `refuseSuspended`:
 * the 409 of a suspended tenant instead).
 */
export async function takeConsoleUrl (ctx: Ctx, rec: JobRecord, p: Principal, o: { refuseSuspended?: boolean } = {}): Promise<string | undefined> {
  if (rec.kind !== 'console' || rec.state !== 'succeeded' || rec.requestedBy !== p.id) return undefined
  // A console whose tenant was suspended while its job ran is revoked, never handed out. The hand-over is taken
  // at the same time (one round trip for both): a URL taken and then refused is one nobody can have again.
  const [suspended, sealed] = await Promise.all([suspendedRevoking(ctx, rec.tenantId, rec.result?.sessionId), ctx.sessions.takeUrlHandover(rec.id)])
  if (suspended) {
    if (o.refuseSuspended === true) throw suspendedError(rec.tenantId)
    return undefined
  }
  return sealed === undefined ? undefined : ctx.transit.open<string>(sealed, urlHandoverAad(rec.id))
}
