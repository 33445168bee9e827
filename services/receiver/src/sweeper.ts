/**
 * The deadline sweeper: every DEADLINE_SWEEP_MS it times out the unfinished jobs whose deadline has passed,
 * and drains every slot group with parked jobs (slots also free by expiry, and a hand-off can be lost with its
 * receiver). It runs on the one receiver replica that holds its lease (runLeased), and another takes over
 * when that one dies; the transition is idempotent anyway, so two replicas ending the same job during a
 * hand-over is harmless (the second sees 'stale').
 */
import { brief } from '@porthole/shared/logging'
import { keys, runLeased } from '@porthole/shared/store'
import { DEADLINE_FAILURE, type ReceiverParts } from './parts.js'

/** Starts sweeping; the returned function stops it (and hands the lease over). */
export function startSweeper (p: ReceiverParts, drain: (group: string) => Promise<void>): () => Promise<void> {
  const log = p.log.child({ component: 'sweeper' })
  const k = keys(p.config.PORTHOLE_NAMESPACE)
  async function sweep (): Promise<void> {
    try {
      for (const id of await p.jobs.overdue(Date.now())) {
        const r = await p.record(id, 'timed_out', { error: DEADLINE_FAILURE })
        if (r.status === 'missing') {
          await p.redis.zrem(k.jobDeadlines, id) // the record expired or was deleted: forget its deadline
          continue
        }
        if (r.status === 'ok') log.info({ jobId: id }, 'job timed out')
        await p.releaseIfPower(id)
      }
      for (const group of await p.slots.parkedGroups()) await drain(group)
    } catch (err) {
      log.warn({ err: brief(err) }, 'deadline sweep failed')
    }
  }
  const run = runLeased(p.redis, k.lease('receiver.sweeper'), p.config.DEADLINE_SWEEP_MS, sweep, log)
  return async () => { await run.stop() }
}
