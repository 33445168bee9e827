/**
 * Tells the event stream when console sessions expire: every gateway sweeps each second, and the store's
 * script lets only one of them tell of each session (ConsoleSessionStore.sweepExpired).
 */
import type { Logger } from '@porthole/shared/logging'
import type { ConsoleSessionStore } from '@porthole/shared/store'

const SWEEP_EVERY_MS = 1000

/** Starts the sweep; the returned function stops it. */
export function sweepExpiredSessions (sessions: ConsoleSessionStore, log: Logger): () => void {
  let failing = false
  const t = setInterval(() => {
    sessions.sweepExpired().then(() => { failing = false }, (err: unknown) => {
      // Redis is down: the sessions wait in their set and are told of at the next sweep that works.
      if (!failing) log.warn({ err: { message: (err as Error).message } }, 'console expiry sweep failed')
      failing = true
    })
  }, SWEEP_EVERY_MS)
  t.unref()
  return () => { clearInterval(t) }
}
