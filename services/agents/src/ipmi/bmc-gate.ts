/**
 * BMCs are small computers that drop sessions when several clients talk to them at once. The gate runs one
 * command at a time per BMC (`host:port`) in this process and keeps a minimum interval between commands to
 * one BMC. With a Redis-backed `Locks` the interval is also kept across agent replicas (the slot is booked in
 * Redis); without one it is kept per process. Across replicas commands are spaced but not strictly serialised:
 * the receiver's per-server power lock already keeps two power jobs for one server apart.
 */
import type { Locks } from '@porthole/shared/store'
import { sleep, untilAborted } from '@porthole/shared/async'

export interface BmcGateOptions {
  minIntervalMs: number
  /** Shared rate gate (optional); when absent the interval is kept in process. */
  locks?: Locks | undefined
}

export class BmcGate {
  private readonly tails = new Map<string, Promise<void>>()
  private readonly lastEnd = new Map<string, number>()

  constructor (private readonly o: BmcGateOptions) {}

  /** Runs `fn` when no other command to `key` runs here and the interval since the last one has passed. */
  async run<T> (key: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>(resolve => { release = resolve })
    const tail = prev.then(() => mine)
    this.tails.set(key, tail)
    void tail.then(() => { if (this.tails.get(key) === tail) this.tails.delete(key) })
    try {
      await untilAborted(prev, signal, 'the deadline passed while waiting for the BMC')
      await this.spacing(key, signal)
      return await fn()
    } finally {
      this.lastEnd.set(key, Date.now())
      release()
      // Forget idle BMCs so the map does not grow with every host ever seen.
      const end = this.lastEnd.get(key)
      setTimeout(() => { if (this.lastEnd.get(key) === end && !this.tails.has(key)) this.lastEnd.delete(key) }, Math.max(this.o.minIntervalMs, 1) + 1000).unref()
    }
  }

  private async spacing (key: string, signal: AbortSignal): Promise<void> {
    const interval = this.o.minIntervalMs
    if (interval <= 0) return
    const last = this.lastEnd.get(key)
    if (last !== undefined) {
      const wait = last + interval - Date.now()
      if (wait > 0) await sleep(wait, signal)
    }
    if (this.o.locks !== undefined) {
      for (;;) {
        const wait = await this.o.locks.rateGate(`bmc:${key}`, interval)
        if (wait === 0) return
        await sleep(wait, signal)
      }
    }
  }
}
