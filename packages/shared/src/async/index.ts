/** Waiting that an `AbortSignal` cuts short: the agents bound every wait by their job's deadline with it. */
import { TimeoutError } from '@porthole/contracts/errors'

/** Sleeps `ms`, or throws a TimeoutError as soon as `signal` aborts (at once when it already has). */
export async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw new TimeoutError('the deadline passed')
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(t); reject(new TimeoutError('the deadline passed')) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Waits for `p`, or throws a TimeoutError saying `what` as soon as `signal` aborts. Whatever `p` does later is
 * ignored (a native call, for one, keeps running on its thread).
 */
export async function untilAborted<T> (p: Promise<T>, signal: AbortSignal, what = 'the deadline passed'): Promise<T> {
  if (signal.aborted) { p.catch(() => {}); throw new TimeoutError(what) }
  let onAbort!: () => void
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(new TimeoutError(what))
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([p, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
    p.catch(() => {})
  }
}
