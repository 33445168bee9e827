/**
 * Dispatch: takes jobs from `<ns>.jobs.receiver` (both lanes), applies the per-server and per-tenant rules and
 * routes each job to its agent type's queue, or delays or parks it.
 *
 * Fair share: a job is dispatched only while its tenant has fewer than TENANT_MAX_IN_FLIGHT status and console
 * jobs (TENANT_MAX_POWER_IN_FLIGHT power jobs) dispatched and unfinished (TenantSlots, in Redis, shared by the
 * replicas). Others are parked in Redis and acked, so they hold neither this receiver's prefetch nor the
 * agents': other tenants' jobs pass them. The terminal transition that frees a slot names the slot group when
 * it has parked jobs, and the receiver that recorded it dispatches the earliest itself (`drain`); the sweeper
 * drains every group with parked jobs too, which covers slots freed by expiry and hand-offs lost with a receiver.
 */
import { deadLetterPoison, laneOf, ttlUntil, type Delivery, type Disposition } from '@porthole/shared/amqp'
import { Job, compile, isTerminal, type AgentRequest, type JobState } from '@porthole/contracts'
import { brief, type Logger } from '@porthole/shared/logging'
import { TenantSlots } from '@porthole/shared/store'
import { DEADLINE_FAILURE, type ReceiverParts } from './parts.js'

const checkJob = compile(Job, 'job')

export interface Dispatch {
  /** The handler of both job queues. */
  onJob: (d: Delivery) => Promise<Disposition>
  /** Hands a slot group's free slots to its earliest parked jobs. Never throws. */
  drain: (group: string) => Promise<void>
}

export function dispatcher (p: ReceiverParts): Dispatch {
  const { amqp, jobs, locks, metrics, n, servers, slots } = p
  const jobLog = p.log.child({ component: 'jobs' })
  const slotLog = p.log.child({ component: 'slots' })

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
    if (!checkJob.check(body)) {
      // A message that can never be processed: its job (when it names one) fails now, not at its deadline.
      return await deadLetterPoison(body, checkJob, { fail: async (id, error) => await p.record(id, 'failed', { error }), log: jobLog, what: 'job' })
    }
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
      await p.record(job.id, 'timed_out', { error: DEADLINE_FAILURE })
      l.info('job reached the receiver after its deadline')
      return 'ack'
    }
    if (server === undefined || server.tenantId !== job.tenantId) {
      await p.record(job.id, 'failed', { error: { code: 'not_found', message: 'server not found', retryable: false } })
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
    const dispatched = await jobs.transition(job.id, 'dispatched')
    // Cancelled (or ended otherwise) since it was read above: no agent gets it. Its end freed the tenant slot.
    if (dispatched.status === 'stale' && isTerminal(dispatched.state as JobState)) {
      if (job.kind === 'power') await locks.releasePower(server.id, job.id)
      l.info({ state: dispatched.state }, 'job ended before dispatch; not dispatched')
      return 'ack'
    }
    const request: AgentRequest = { job, server }
    await amqp.publish(n.agentsExchange, n.agentKeyOf(server.agent, job.kind), request, laneOf(job.kind) === 'interactive' ? { expiration: ttlUntil(deadline) } : {})
    metrics.dispatched(job.kind, server.id, server.agent)
    l.debug({ agent: server.agent }, 'job dispatched')
    return 'ack'
  }

  return { onJob, drain }
}
