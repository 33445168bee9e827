/** What every consumer does with a message that can never be processed. */
import type { TSchema } from '@sinclair/typebox'
import { jobIdOf, type Checker, type JobFailure } from '@porthole/contracts'
import { brief, type Logger } from '../logging/index.js'
import type { Disposition } from './client.js'

/**
 * A poison message (one its schema refuses): fails the job it names, when it names one, with code `poison`
 * and the schema's reason, then dead-letters it. When the failure cannot be recorded it is requeued instead,
 * so that the job is not left to its deadline (its delivery limit dead-letters it at last).
 */
export async function deadLetterPoison (body: unknown, checker: Checker<TSchema>, o: {
  /** Records the job's failure (a transition, or a JobUpdate to the receiver). */
  fail: (jobId: string, error: JobFailure) => Promise<unknown>
  log: Logger
  /** What the message was meant to be, for the log line: `job`, `agent request`, `mint request`. */
  what: string
}): Promise<Disposition> {
  const reason = checker.explain(body)
  const jobId = jobIdOf(body)
  o.log.warn({ jobId, reason }, `poison ${o.what} dead-lettered`)
  if (jobId === undefined) return 'dead'
  try {
    await o.fail(jobId, { code: 'poison', message: reason, retryable: false })
  } catch (err) {
    o.log.warn({ jobId, err: brief(err) }, `could not fail the job of a poison ${o.what}; requeueing`)
    return 'requeue'
  }
  return 'dead'
}
