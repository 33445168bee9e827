/**
 * Tells the event stream when console sessions expire: each second, on the one gateway replica that holds
 * the sweep's lease (runLeased); the store's script would also let only one sweep tell of each session
 * (ConsoleSessionStore.sweepExpired), so a hand-over between replicas tells of none twice. Live sockets are
 * closed at expiry by each viewer's own timer, on whichever gateway holds them, not by this sweep.
 */
import type { Logger } from '@porthole/shared/logging'
import { keys, runLeased, type ConsoleSessionStore, type Redis } from '@porthole/shared/store'

const SWEEP_EVERY_MS = 1000

/** Starts the sweep; the returned function stops it (and hands the lease over). */
export function sweepExpiredSessions (redis: Redis, ns: string, sessions: ConsoleSessionStore, log: Logger): () => Promise<void> {
  // Redis is down: the sessions wait in their set and are told of at the next sweep that works.
  const run = runLeased(redis, keys(ns).lease('gateway.expiry'), SWEEP_EVERY_MS, async () => { await sessions.sweepExpired() }, log)
  return async () => { await run.stop() }
}
