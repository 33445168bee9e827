/**
 * Results: records the agents' and the console gateway's JobUpdates (`<ns>.results`, both lanes). Only the
 * durable lane carries power jobs, so only its ends release a server's power lock.
 */
import type { Delivery, Disposition, Lane } from '@porthole/shared/amqp'
import { JobUpdate, compile, resultKinds, resultProblem } from '@porthole/contracts'
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
      if (u.error !== undefined) o.error = u.error
      if (u.state === 'failed' && u.error === undefined) o.error = { code: 'internal', message: 'the agent reported a failure without a reason', retryable: false }
      // A result that is not its job's kind's is not recorded as one: the result goes with the kinds it fits,
      // and the transition applies only to a job of one of them (checked in its Lua step, without a read here).
      const kinds = u.result === undefined ? undefined : resultKinds(u.result)
      let r = kinds === undefined || kinds.length === 0 ? undefined : await p.record(u.jobId, u.state, { ...o, result: u.result, kinds })
      let state = u.state
      if (u.result !== undefined && (r === undefined || r.status === 'kind')) {
        // Rare: no job's result, or another kind's. The job's kind names what it should have been.
        const kind = r?.kind ?? (await p.jobs.get(u.jobId))?.kind
        const problem = kind === undefined ? 'it is no job\'s result' : resultProblem(kind, u.result) ?? 'it is another kind of job\'s'
        state = 'failed'
        o.error = { code: 'internal', message: `the result reported is not a ${kind ?? ''} job's: ${problem}`.slice(0, 500), retryable: false }
        r = undefined
      }
      r ??= await p.record(u.jobId, state, o)
      log.debug({ jobId: u.jobId, state, status: r.status }, 'job update recorded')
      if (state !== 'running' && lane === 'durable') await p.releaseIfPower(u.jobId, r.job)
      return 'ack'
    } catch (err) {
      log.warn({ jobId: u.jobId, err: brief(err) }, 'recording a job update failed; requeueing')
      return 'requeue'
    }
  }
}
