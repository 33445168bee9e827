/**
 * Leases in Redis: periodic work that must run on exactly one replica at a time (a sweep, a scheduler) runs
 * under a lease; the replica holding it renews it, and when that replica dies the lease runs out and another
 * takes it over. Not "run on replica 0": any replica can be the one, and which one changes as they come and go.
 */
import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Logger } from '../logging/index.js'

/** Extends or deletes the lease only while it still holds this holder's token. */
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`

interface LeaseCommands {
  portholeLeaseRenew: (key: string, token: string, ttlMs: number) => Promise<number>
  portholeLeaseRelease: (key: string, token: string) => Promise<number>
}

/** One holder's claim on a named lease (`key`): a random token under SET NX PX, renewed and released only by its holder. */
export class Lease {
  /** This holder's token: the value of the key while it holds the lease. */
  readonly token = randomUUID()
  private readonly r: Redis & LeaseCommands

  constructor (redis: Redis, readonly key: string, readonly ttlMs: number) {
    if (!('portholeLeaseRenew' in redis)) {
      redis.defineCommand('portholeLeaseRenew', { numberOfKeys: 1, lua: RENEW })
      redis.defineCommand('portholeLeaseRelease', { numberOfKeys: 1, lua: RELEASE })
    }
    this.r = redis as Redis & LeaseCommands
  }

  /** Takes the lease if nobody holds it; true when this holder has it now (taken or renewed). */
  async acquire (): Promise<boolean> {
    if (await this.r.set(this.key, this.token, 'PX', this.ttlMs, 'NX') === 'OK') return true
    return await this.renew()
  }

  /** Extends the lease by its TTL if this holder still has it; false when it has run out or another holder took it. */
  async renew (): Promise<boolean> {
    return await this.r.portholeLeaseRenew(this.key, this.token, this.ttlMs) === 1
  }

  /** Gives the lease up (so another replica takes over at once); a lease held by another is left alone. */
  async release (): Promise<boolean> {
    return await this.r.portholeLeaseRelease(this.key, this.token) === 1
  }
}

export interface LeasedRun {
  /** True while this replica holds the lease. */
  readonly holding: boolean
  /** Stops the work (waiting for a run under way) and releases the lease, so another replica takes it over at once. */
  stop: () => Promise<void>
}

export interface LeasedOptions {
  /** How long the lease lasts without renewal: how soon another replica takes over from a dead holder (default 10 s, at least 3 ticks). */
  ttlMs?: number
  /** Called as this replica takes the lease (true) or loses it (false). */
  onChange?: (holding: boolean) => void
  /** Wait a whole interval before the first run (default: run as soon as the lease is taken). */
  delayFirst?: boolean
}

/**
 * Runs `fn` every `intervalMs` on the one replica that holds the lease `name` (a Redis key), never on two at
 * once while Redis is up and never overlapping itself. Every replica calls this; each tick the holder renews
 * and the others try to take it, so a dead holder is replaced within the lease's TTL. The work must still be
 * idempotent: a holder that stalls past its TTL, or a Redis failover that loses the key, can let a second
 * replica run it once beside the first.
 */
export function runLeased (redis: Redis, name: string, intervalMs: number, fn: () => Promise<void>, log: Logger, o: LeasedOptions = {}): LeasedRun {
  const ttlMs = Math.max(o.ttlMs ?? 10_000, 300)
  // The lease is renewed three times per TTL however long the work's interval is.
  const tickMs = Math.max(50, Math.min(intervalMs, Math.floor(ttlMs / 3)))
  const lease = new Lease(redis, name, ttlMs)
  const l = log.child({ component: 'lease', lease: name })
  let holding = false
  let stopped = false
  let lastRun = o.delayFirst === true ? Date.now() : 0
  let running: Promise<void> | undefined
  let failing = false

  const set = (now: boolean): void => {
    if (now === holding) return
    holding = now
    l.info(now ? 'lease taken: this replica runs the work' : 'lease lost: another replica runs the work')
    o.onChange?.(now)
  }

  async function tick (): Promise<void> {
    try {
      set(holding ? await lease.renew() : await lease.acquire())
      failing = false
    } catch (err) {
      // Redis is down: nobody can renew, so the lease runs out everywhere and the first replica back takes it.
      if (!failing) l.warn({ err: { message: (err as Error).message } }, 'lease renewal failed')
      failing = true
      set(false)
      return
    }
    if (!holding || stopped || running !== undefined || Date.now() - lastRun < intervalMs) return
    lastRun = Date.now()
    running = fn().catch((err: unknown) => { l.warn({ err: { message: (err as Error).message } }, 'leased work failed') })
      .finally(() => { running = undefined })
  }

  // One tick at a time: a renewal Redis answers slowly is not overtaken by the next.
  let ticking: Promise<void> | undefined
  const next = (): void => { if (ticking === undefined && !stopped) ticking = tick().finally(() => { ticking = undefined }) }
  const timer = setInterval(next, tickMs)
  timer.unref()
  next()
  return {
    get holding () { return holding },
    async stop () {
      stopped = true
      clearInterval(timer)
      await ticking
      await running
      if (holding) await lease.release().catch(() => false)
      holding = false
    }
  }
}
