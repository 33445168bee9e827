/** What every driver's power actions share: the result they return and how they wait for the target to confirm it. */
import { sleep } from '@porthole/shared/async'
import type { PowerState, PowerStatus } from '@porthole/contracts'
import { TimeoutError } from '@porthole/contracts/errors'
import type { AgentContext } from './driver.js'

/** A power state read just now; `changed` and `detail` only when given. */
export function powerStatus (power: PowerState, o: { changed?: boolean | undefined, detail?: string | undefined } = {}): PowerStatus {
  const s: PowerStatus = { power, checkedAt: new Date().toISOString() }
  if (o.changed !== undefined) s.changed = o.changed
  if (o.detail !== undefined) s.detail = o.detail
  return s
}

/** Polling stops this long before the deadline, so that a job fails with the driver's error, not by the clock. */
export const DEADLINE_MARGIN_MS = 300

export interface PollOptions<T> {
  /** Reads the target's state once. */
  read: () => Promise<T>
  ok: (state: T) => boolean
  pollMs: number
  /** How long to wait at most (bounded by the job's deadline less DEADLINE_MARGIN_MS). */
  waitMs?: number
  /** The TimeoutError's message from the last state read and when polling gave up (`after 60000 ms`, `by the job's deadline`). */
  failure: (last: T, when: string) => string
}

/** Reads until `ok`; the last state read, or a TimeoutError when the wait or the deadline comes first. */
export async function pollUntil<T> (ctx: AgentContext, o: PollOptions<T>): Promise<T> {
  const byDeadline = ctx.deadline.getTime() - DEADLINE_MARGIN_MS
  const waitMs = o.waitMs ?? Infinity
  const until = Math.min(byDeadline, Date.now() + waitMs)
  for (;;) {
    const state = await o.read()
    if (o.ok(state)) return state
    if (Date.now() + o.pollMs > until) throw new TimeoutError(o.failure(state, until < byDeadline ? `after ${waitMs} ms` : 'by the job\'s deadline'))
    await sleep(o.pollMs, ctx.signal)
  }
}
