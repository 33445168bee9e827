/**
 * The deadline sweeper: every DEADLINE_SWEEP_MS it times out the unfinished jobs whose deadline has passed,
 * and drains every slot group with parked jobs (slots also free by expiry, and a hand-off can be lost with its
 * receiver). Every replica runs it; the transition is idempotent, so two replicas ending the same job is
 * harmless (the second sees 'stale').
 */
import { brief } from '@porthole/shared/logging'
import { keys } from '@porthole/shared/store'
import { DEADLINE_FAILURE, type ReceiverParts } from './parts.js'

/** Starts sweeping; the returned function stops it. */
export function startSweeper (p: ReceiverParts, drain: (group: string) => Promise<void>): () => void {
  const log = p.log.child({ component: 'sweeper' })
  const deadlines = keys(p.config.PORTHOLE_NAMESPACE).jobDeadlines
  let sweeping = false
  async function sweep (): Promise<void> {
    if (sweeping) return
    sweeping = true
    try {
      for (const id of await p.jobs.overdue(Date.now())) {
        const r = await p.record(id, 'timed_out', { error: DEADLINE_FAILURE })
        if (r.status === 'missing') {
          await p.redis.zrem(deadlines, id) // the record expired or was deleted: forget its deadline
          continue
        }
        if (r.status === 'ok') log.info({ jobId: id }, 'job timed out')
        await p.releaseIfPower(id)
      }
      for (const group of await p.slots.parkedGroups()) await drain(group)
    } catch (err) {
      log.warn({ err: brief(err) }, 'deadline sweep failed')
    } finally {
      sweeping = false
    }
  }
  const timer = setInterval(() => { void sweep() }, p.config.DEADLINE_SWEEP_MS)
  return () => clearInterval(timer)
}
