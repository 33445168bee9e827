/**
 * The receiver: takes jobs from `<ns>.jobs.receiver`, applies the per-server rules, routes each job to its
 * agent type's queue, records the agents' answers, and ends jobs whose deadline has passed.
 *
 * Every state change goes through `JobStore.transition` (one Lua script, forward-only), so several receiver
 * replicas, the deadline sweeper and late agent answers can race without moving a job backwards.
 *
 * Fair share: a job is dispatched only while its tenant has fewer than TENANT_MAX_IN_FLIGHT status and console
 * jobs (TENANT_MAX_POWER_IN_FLIGHT power jobs) dispatched and unfinished (TenantSlots, in Redis, shared by the
 * replicas). Others are parked in Redis and acked, so they hold neither this receiver's prefetch nor the
 * agents': other tenants' jobs pass them. The terminal transition that frees a slot names the slot group when
 * it has parked jobs, and the receiver that recorded it dispatches the earliest itself; the sweeper drains
 * every group with parked jobs too, which covers slots freed by expiry and hand-offs lost with a receiver.
 */
import { AmqpClient, DELIVERY_LIMIT, laneOf, names, ttlUntil, type Delivery, type Disposition, type Lane } from '@porthole/shared/amqp'
import { Job, JobUpdate, compile, isTerminal, type AgentRequest, type JobFailure } from '@porthole/shared/contracts'
import { brief, type Logger } from '@porthole/shared/logging'
import { JobStore, Locks, ServerStore, TenantSlots, createRedis, keys, type Redis } from '@porthole/shared/store'
import { serveMetrics } from '@porthole/shared/metrics'
import type { ReceiverConfig } from './config.js'
import { ReceiverMetrics } from './metrics.js'

const checkJob = compile(Job, 'job')
const checkUpdate = compile(JobUpdate, 'job update')
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** The failure recorded for a job that nobody finished by its deadline. */
export const DEADLINE_FAILURE: JobFailure = { code: 'timeout', message: 'no answer by the deadline', retryable: true }

export interface ReceiverDeps {
  config: ReceiverConfig
  log: Logger
  /** Aborting it during the start (e.g. SIGTERM while the broker is still unreachable) ends the start: it closes what it opened and rejects. */
  signal?: AbortSignal
}

export interface Receiver {
  /** The port of the metrics listener. */
  metricsPort: number
  /** Stops consuming, waits for running handlers, then closes the broker and Redis connections. */
  close: () => Promise<void>
}

export async function startReceiver ({ config, log, signal }: ReceiverDeps): Promise<Receiver> {
  const ns = config.PORTHOLE_NAMESPACE
  const n = names(ns)
  const redis = createRedis(config.REDIS_URL, log, 'porthole-receiver')
  const jobs = new JobStore(redis, ns)
  const servers = new ServerStore(redis, ns)
  const locks = new Locks(redis, ns)
  const slots = new TenantSlots(redis, ns, { interactive: config.TENANT_MAX_IN_FLIGHT, durable: config.TENANT_MAX_POWER_IN_FLIGHT })
  const amqp = new AmqpClient({ url: config.RABBITMQ_URL, namespace: ns, log, name: 'porthole-receiver' })
  const jobLog = log.child({ component: 'jobs' })
  const resultLog = log.child({ component: 'results' })
  const slotLog = log.child({ component: 'slots' })
  const metrics = new ReceiverMetrics({ redis, amqp, ns, servers })

  /**
   * Records a job's state; an end that freed a slot of a group with parked jobs hands the slot on, after
   * releasing the job's power lock (the next job may be for the same server).
   */
  async function record (jobId: string, state: Parameters<JobStore['transition']>[1], o: Parameters<JobStore['transition']>[2] = {}): ReturnType<JobStore['transition']> {
    const r = await jobs.transition(jobId, state, o)
    if (r.status === 'ok' && r.job !== undefined && isTerminal(state)) await metrics.ended(r.job, state, o.at ?? new Date())
    if (r.drain !== undefined) {
      if (TenantSlots.laneOfGroup(r.drain) === 'durable') await releaseIfPower(jobId)
      await drain(r.drain)
    }
    return r
  }

  /**
   * Gives the slot group's free slots (a tenant's, in one lane) to its earliest parked jobs and dispatches
   * them from here, as if they had just arrived with their slot. Never throws: a job not handed on now stays
   * parked with its slot, for the next drain (the sweeper's, at the latest); one whose receiver died while
   * handing it on waits for its lease to run out first.
   */
  async function drain (group: string): Promise<void> {
    let ready: Job[]
    try { ready = await slots.drain(group) } catch (err) {
      slotLog.warn({ group, err: brief(err) }, 'could not drain parked jobs; the sweeper tries again')
      return
    }
    await Promise.all(ready.map(async (job) => {
      const l = jobLog.child({ jobId: job.id, serverId: job.serverId, traceId: job.traceId })
      try {
        await route(job, l, true)
        await slots.handedOff(job)
        l.debug('parked job given a slot')
      } catch (err) {
        l.warn({ err: brief(err) }, 'could not hand a parked job on; it stays parked with its slot for the next drain')
        await slots.unlease(job).catch(() => {}) // else the lease would hold it back for HANDOFF_LEASE_MS
      }
    }))
  }

  async function onJob (d: Delivery): Promise<Disposition> {
    const body = d.body
    if (!checkJob.check(body)) return await poison(body)
    const l = jobLog.child({ jobId: body.id, serverId: body.serverId, traceId: body.traceId })
    try {
      return await route(body, l, false)
    } catch (err) {
      l.warn({ err: brief(err), deliveryCount: d.deliveryCount }, 'job handling failed; requeueing')
      return 'requeue'
    }
  }

  /**
   * Applies the per-server and per-tenant rules to a job and dispatches it to its agent, or delays or parks
   * it. `withSlot`: the job comes from the tenant's parked jobs, its slot already taken (drain).
   */
  async function route (job: Job, l: Logger, withSlot: boolean): Promise<Disposition> {
    // Both reads at once: one Redis round trip on every job's path instead of two.
    const [rec, server] = await Promise.all([jobs.get(job.id), servers.get(job.serverId)])
    if (rec === undefined) {
      l.warn('job has no record; dead-lettering it')
      return 'dead'
    }
    // The API may already have ended it (e.g. failed after a lost confirm), or the sweeper timed it out.
    if (isTerminal(rec.state)) {
      l.debug({ state: rec.state }, 'job already finished; skipping')
      return 'ack'
    }
    const now = Date.now()
    const deadline = Date.parse(job.deadline)
    if (deadline <= now) {
      await record(job.id, 'timed_out', { error: DEADLINE_FAILURE })
      l.info('job reached the receiver after its deadline')
      return 'ack'
    }
    if (server === undefined || server.tenantId !== job.tenantId) {
      await record(job.id, 'failed', { error: { code: 'not_found', message: 'server not found', retryable: false } })
      l.info('server not found')
      return 'ack'
    }
    if (job.kind === 'power') {
      // One power job at a time per server. The lock expires at the deadline at the latest, so a lost
      // release never blocks a server for longer than one job's lifetime.
      const lock = await locks.acquirePower(server.id, job.id, deadline - now)
      if (!lock.acquired) {
        // Back through the delay queue: it dead-letters the job to the receiver again after DELAY_MS.
        await amqp.publish('', n.delayQueue, job)
        l.debug({ holder: lock.holder }, 'server busy with another power job; delayed')
        // A job waiting for its server holds no slot of its tenant: one handed a slot from parking gives it
        // back (and the tenant's next parked job may take it), and asks for one again when it comes back.
        if (withSlot) {
          await slots.release(job)
          await drain(TenantSlots.groupOf(job.tenantId, job.kind))
        }
        return 'ack'
      }
    }
    // After the power lock, so that a job waiting for its server holds no slot of its tenant.
    const slot = withSlot ? { admitted: true, free: 0 } : await slots.admit(job, now)
    if (!slot.admitted) {
      if (job.kind === 'power') await locks.releasePower(server.id, job.id)
      l.debug({ tenantId: job.tenantId }, 'tenant at its in-flight cap; job parked')
      // Parked behind earlier parked jobs while slots are free: a drain is due (another may be running).
      if (slot.free > 0) await drain(TenantSlots.groupOf(job.tenantId, job.kind))
      return 'ack'
    }
    // Recorded before the publish so that the history reads in order even when the agent answers
    // at once; a failed publish requeues the job and the transition is then 'same'.
    await jobs.transition(job.id, 'dispatched')
    const request: AgentRequest = { job, server }
    await amqp.publish(n.agentsExchange, n.agentKeyOf(server.agent, job.kind), request, laneOf(job.kind) === 'interactive' ? { expiration: ttlUntil(deadline) } : {})
    metrics.dispatched(job.kind, server.id, server.agent)
    l.debug({ agent: server.agent }, 'job dispatched')
    return 'ack'
  }

  /** A message that can never be processed: mark its job failed when it names one, then dead-letter it. */
  async function poison (body: unknown): Promise<Disposition> {
    let message = 'invalid job: the message body is not JSON'
    if (body !== undefined) {
      try { checkJob.parse(body) } catch (err) { message = (err as Error).message.slice(0, 500) }
    }
    const id = typeof body === 'object' && body !== null && 'id' in body ? (body as { id: unknown }).id : undefined
    if (typeof id === 'string' && UUID.test(id)) {
      try {
        const r = await record(id, 'failed', { error: { code: 'poison', message, retryable: false } })
        jobLog.warn({ jobId: id, status: r.status, reason: message }, 'poison job dead-lettered')
      } catch (err) {
        jobLog.warn({ jobId: id, err: brief(err) }, 'could not mark a poison job failed; requeueing')
        return 'requeue'
      }
    } else {
      jobLog.warn({ reason: message }, 'poison message dead-lettered')
    }
    return 'dead'
  }

  /** Records an agent's or the gateway's update; only the durable lane carries power jobs and their locks. */
  async function onResult (d: Delivery, lane: Lane): Promise<Disposition> {
    if (!checkUpdate.check(d.body)) {
      let reason = 'not JSON'
      try { checkUpdate.parse(d.body) } catch (err) { reason = (err as Error).message.slice(0, 500) }
      resultLog.warn({ reason }, 'invalid job update dead-lettered')
      return 'dead'
    }
    const u = d.body
    try {
      const at = new Date(u.at)
      const o: Parameters<JobStore['transition']>[2] = { at }
      if (u.result !== undefined) o.result = u.result
      if (u.error !== undefined) o.error = u.error
      if (u.state === 'failed' && u.error === undefined) o.error = { code: 'internal', message: 'the agent reported a failure without a reason', retryable: false }
      const r = await record(u.jobId, u.state, o)
      resultLog.debug({ jobId: u.jobId, state: u.state, status: r.status }, 'job update recorded')
      if (u.state !== 'running' && lane === 'durable') await releaseIfPower(u.jobId)
      return 'ack'
    } catch (err) {
      resultLog.warn({ jobId: u.jobId, err: brief(err) }, 'recording a job update failed; requeueing')
      return 'requeue'
    }
  }

  /**
   * Every dead letter also reaches the receiver (`ns.dead.watch`; the copy in `ns.dead` stays for operators).
   * A job message RabbitMQ gave up on ends its job now instead of at its deadline: past the delivery limit
   * (its handlers failed again and again) the job fails as `unavailable`, retryable; past its TTL (an
   * interactive job nobody took in time) it times out. Messages our handlers dead-lettered were dealt with
   * by them.
   */
  async function onDeadLetter (d: Delivery): Promise<Disposition> {
    // The newest death is the one that brought it here (a power job may have expired in the delay queue before).
    const death = (d.raw.properties.headers?.['x-death'] as Array<{ reason?: unknown, queue?: unknown }> | undefined)?.[0]
    const reason = death?.reason
    const id = deadJobId(d.body)
    if (id === undefined || (reason !== 'delivery_limit' && reason !== 'expired')) return 'ack'
    const queue = String(death?.queue ?? 'a queue')
    try {
      // Past the delivery limit: most often a dependency (Redis) that stayed down through every retry, so the
      // caller may try again; a poison message is dead-lettered by its handler instead, which fails it.
      const r = reason === 'expired'
        ? await record(id, 'timed_out', { error: DEADLINE_FAILURE })
        : await record(id, 'failed', { error: { code: 'unavailable', message: `the job's message was dead-lettered from ${queue} after ${DELIVERY_LIMIT} failed deliveries`, retryable: true } })
      if (r.status === 'ok') {
        jobLog.warn({ jobId: id, reason, queue }, reason === 'expired' ? 'job expired in its queue; timed out' : 'job dead-lettered after its delivery limit; failed')
        await releaseIfPower(id)
      }
      return 'ack'
    } catch (err) {
      jobLog.warn({ jobId: id, err: brief(err) }, 'could not end a dead-lettered job; requeueing')
      return 'requeue'
    }
  }

  async function releaseIfPower (jobId: string): Promise<void> {
    const rec = await jobs.get(jobId)
    if (rec?.kind === 'power') await locks.releasePower(rec.serverId, jobId)
  }

  // The deadline sweeper. Every replica runs it; the transition is idempotent, so two replicas ending the
  // same job is harmless (the second sees 'stale').
  let sweeping = false
  const deadlines = keys(ns).jobDeadlines
  async function sweep (): Promise<void> {
    if (sweeping) return
    sweeping = true
    try {
      for (const id of await jobs.overdue(Date.now())) {
        const r = await record(id, 'timed_out', { error: DEADLINE_FAILURE })
        if (r.status === 'missing') {
          await redis.zrem(deadlines, id) // the record expired or was deleted: forget its deadline
          continue
        }
        if (r.status === 'ok') log.info({ component: 'sweeper', jobId: id }, 'job timed out')
        await releaseIfPower(id)
      }
      // Slots also free by expiry, and a hand-off can be lost with its receiver: drain every group that waits.
      for (const group of await slots.parkedGroups()) await drain(group)
    } catch (err) {
      log.warn({ component: 'sweeper', err: brief(err) }, 'deadline sweep failed')
    } finally {
      sweeping = false
    }
  }

  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(new Error('start aborted'))
    if (signal?.aborted === true) onAbort(); else signal?.addEventListener('abort', onAbort, { once: true })
  })
  try {
    await Promise.race([amqp.start(), aborted])
    // Both lanes: power jobs on quorum queues, status and console jobs on classic ones (see topology.ts).
    const handlers: Array<[string, (d: Delivery) => Promise<Disposition>]> = [
      [n.receiverQueue, onJob], [n.receiverInteractiveQueue, onJob],
      [n.resultsQueue, async (d) => await onResult(d, 'durable')], [n.resultsInteractiveQueue, async (d) => await onResult(d, 'interactive')],
      [n.deadWatchQueue, onDeadLetter]
    ]
    for (const [queue, handler] of handlers) {
      await Promise.race([amqp.consume(queue, handler, { prefetch: config.RECEIVER_PREFETCH }), aborted])
    }
  } catch (err) {
    await amqp.close(0)
    await closeRedis(redis)
    throw err
  } finally {
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
    aborted.catch(() => {})
  }
  const timer = setInterval(() => { void sweep() }, config.DEADLINE_SWEEP_MS)
  let listener: Awaited<ReturnType<typeof serveMetrics>>
  try {
    listener = await serveMetrics({ host: config.METRICS_HOST, port: config.RECEIVER_METRICS_PORT, registry: metrics.registry, ready: () => amqp.connected && redis.status === 'ready', log })
  } catch (err) {
    clearInterval(timer)
    await amqp.close(0)
    await closeRedis(redis)
    throw err
  }

  return {
    metricsPort: listener.port,
    async close () {
      clearInterval(timer)
      await listener.close()
      await amqp.close()
      await closeRedis(redis)
    }
  }
}

/** The job a dead-lettered job message (a Job, or an AgentRequest / ConsoleMintRequest holding one) is about. */
function deadJobId (body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const b = body as { id?: unknown, kind?: unknown, job?: { id?: unknown } }
  const id = typeof b.job === 'object' && b.job !== null ? b.job.id : typeof b.kind === 'string' ? b.id : undefined
  return typeof id === 'string' && UUID.test(id) ? id : undefined
}

async function closeRedis (r: Redis): Promise<void> {
  try { await r.quit() } catch { r.disconnect() }
}
