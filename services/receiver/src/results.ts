/**
 * Results: records the agents' and the console gateway's JobUpdates (`<ns>.results`, both lanes). Only the
 * durable lane carries power jobs, so only its ends release a server's power lock.
 */
import type { Delivery, Disposition, Lane } from '@porthole/shared/amqp'
import { JobUpdate, compile, resultKinds, resultProblem, type JobResult, type JobState } from '@porthole/contracts'
import { brief } from '@porthole/shared/logging'
import type { ReceiverParts, Transition, TransitionResult } from './parts.js'

const checkUpdate = compile(JobUpdate, 'job update')

export function resultRecorder (p: ReceiverParts): (d: Delivery, lane: Lane) => Promise<Disposition> {
  const log = p.log.child({ component: 'results' })

  /**
   * Records a result, but only on a job of a kind that ends with such a result: it goes with the kinds it fits,
   * and the transition's Lua step checks the job's (no read here). Otherwise the job fails, saying what kind's
   * result it should have been (the job is read only then, when the result fits no kind at all).
   */
  async function recordResult (jobId: string, state: JobState, result: JobResult, o: Transition[2]): Promise<{ r: Awaited<TransitionResult>, state: JobState }> {
    const kinds = resultKinds(result)
    const r = kinds.length === 0 ? undefined : await p.record(jobId, state, { ...o, result, kinds })
    if (r !== undefined && r.status !== 'kind') return { r, state }
    const kind = r?.kind ?? (await p.jobs.get(jobId))?.kind
    const problem = kind === undefined ? 'it is no job\'s result' : resultProblem(kind, result) ?? 'it is another kind of job\'s'
    const error = { code: 'internal' as const, message: `the result reported is not a ${kind ?? ''} job's: ${problem}`.slice(0, 500), retryable: false }
    return { r: await p.record(jobId, 'failed', { ...o, error }), state: 'failed' }
  }

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
      if (u.startedAt !== undefined && u.state !== 'running') o.startedAt = new Date(u.startedAt)
      if (u.state === 'failed' && u.error === undefined) o.error = { code: 'internal', message: 'the agent reported a failure without a reason', retryable: false }
      const { r, state } = u.result === undefined ? { r: await p.record(u.jobId, u.state, o), state: u.state } : await recordResult(u.jobId, u.state, u.result, o)
      log.debug({ jobId: u.jobId, state, status: r.status }, 'job update recorded')
      if (state !== 'running' && lane === 'durable') await p.releaseIfPower(u.jobId, r.job)
      return 'ack'
    } catch (err) {
      log.warn({ jobId: u.jobId, err: brief(err) }, 'recording a job update failed; requeueing')
      return 'requeue'
    }
  }
}
