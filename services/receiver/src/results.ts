/**
 * Results: records the agents' and the console gateway's JobUpdates (`<ns>.results`, both lanes). Only the
 * durable lane carries power jobs, so only its ends release a server's power lock.
 */
import type { Delivery, Disposition, Lane } from '@porthole/shared/amqp'
import { JobUpdate, compile, resultProblem, type JobRecord } from '@porthole/contracts'
import { brief } from '@porthole/shared/logging'
import type { ReceiverParts, Transition } from './parts.js'

const checkUpdate = compile(JobUpdate, 'job update')

export function resultRecorder (p: ReceiverParts): (d: Delivery, lane: Lane) => Promise<Disposition> {
  const log = p.log.child({ component: 'results' })
  return async function onResult (d, lane) {
    if (!checkUpdate.check(d.body)) {
      // Nothing to fail: an update that names no valid job state is only dead-lettered, for operators.
      log.warn({ reason: checkUpdate.explain(d.body) }, 'invalid job update dead-lettered')
      return 'dead'
    }
    const u = d.body
    try {
      const o: Transition[2] = { at: new Date(u.at) }
      let state = u.state
      let rec: JobRecord | undefined
      if (u.result !== undefined) {
        // One read, for succeeded updates only (and kept for the lock below): a result that is not its job's
        // kind's is not recorded as one.
        rec = await p.jobs.get(u.jobId)
        const kind = rec?.kind
        const problem = kind === undefined ? undefined : resultProblem(kind, u.result)
        if (problem === undefined) o.result = u.result
        else {
          state = 'failed'
          o.error = { code: 'internal', message: `the result reported is not a ${kind ?? ''} job's: ${problem}`.slice(0, 500), retryable: false }
        }
      }
      if (u.error !== undefined) o.error = u.error
      if (u.state === 'failed' && u.error === undefined) o.error = { code: 'internal', message: 'the agent reported a failure without a reason', retryable: false }
      const r = await p.record(u.jobId, state, o)
      log.debug({ jobId: u.jobId, state, status: r.status }, 'job update recorded')
      if (state !== 'running' && lane === 'durable') await p.releaseIfPower(u.jobId, rec)
      return 'ack'
    } catch (err) {
      log.warn({ jobId: u.jobId, err: brief(err) }, 'recording a job update failed; requeueing')
      return 'requeue'
    }
  }
}
