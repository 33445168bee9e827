/**
 * The event stream: one Redis stream that the job store's and the session store's scripts append to in the
 * same step as each change they record (the pool store too), so that what `/v1/events` and webhooks tell is exactly what
 * happened, in order, and a reader that comes back with the last id it saw misses nothing.
 *
 * Entries have two fields: `type` (`job`, `console` or `pool`) and `data` (the JobEvent, ConsoleEvent or PoolEvent as JSON).
 * Retention: the newest EVENT_STREAM_MAX_LENGTH entries (approximately: Redis trims whole nodes), which at a
 * few hundred bytes each is some tens of megabytes; a reader that comes back after more than that many
 * events is told that some were lost (EventReader.replay's `gap`).
 */
import type { Redis } from 'ioredis'
import type { ConsoleEvent, JobEvent, PoolEvent } from '@porthole/contracts'
import type { Logger } from '../logging/index.js'
import { keys as keysOf } from './redis.js'

/** How many events the stream keeps (approximately). */
export const EVENT_STREAM_MAX_LENGTH = 100_000

/**
 * Lua that appends one event to the stream: `stream` and `maxlen` are Lua expressions (an ARGV), `type` is
 * 'job' or 'console', `data` a Lua table. Evaluates to nothing; used inside the stores' scripts.
 */
export function xaddLua (stream: string, maxlen: string, type: StreamEventType, data: string): string {
  return `redis.call('XADD', ${stream}, 'MAXLEN', '~', ${maxlen}, '*', 'type', '${type}', 'data', cjson.encode(${data}))`
}

/** The event families of the stream (the SSE `event:` field). */
export type StreamEventType = 'job' | 'console' | 'pool'
export type StreamEvent = { id: string, type: 'job', data: JobEvent } | { id: string, type: 'console', data: ConsoleEvent } | { id: string, type: 'pool', data: PoolEvent }

/** Compares two stream ids (`ms-seq`): negative, zero or positive. */
export function compareEventIds (a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-')
  const [bm = '0', bs = '0'] = b.split('-')
  const d = BigInt(am) - BigInt(bm)
  if (d !== 0n) return d < 0n ? -1 : 1
  const e = BigInt(as) - BigInt(bs)
  return e === 0n ? 0 : e < 0n ? -1 : 1
}

/** Whether `s` is a stream id as Redis writes them. */
export function isEventId (s: string): boolean { return /^\d{1,20}-\d{1,20}$/.test(s) }

type RawEntry = [string, string[]]

/** One stream entry as an event; undefined for an entry of another shape. */
export function parseStreamEntry ([id, fields]: RawEntry): StreamEvent | undefined {
  let type: string | undefined
  let data: string | undefined
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'type') type = fields[i + 1]
    else if (fields[i] === 'data') data = fields[i + 1]
  }
  if ((type !== 'job' && type !== 'console' && type !== 'pool') || data === undefined) return undefined
  try {
    return { id, type, data: JSON.parse(data) } as StreamEvent
  } catch { return undefined }
}

/**
 * Reads the event stream: `replay` pages through what is stored after an id, `tail` follows new entries
 * with one blocking connection per process, dispatched to every listener in stream order.
 */
export class EventReader {
  readonly key: string
  private readonly listeners = new Set<(e: StreamEvent) => void>()
  private last = ''
  private running = false
  private loop: Promise<void> | undefined

  /**
   * `redis` runs the short commands; `blocking` is a connection of its own without a command timeout
   * (createRedis with commandTimeoutMs 0), used only for the blocking XREAD.
   */
  constructor (private readonly redis: Redis, private readonly blocking: Redis, ns: string, private readonly log: Logger) {
    this.key = keysOf(ns).eventStream
  }

  /** The id of the newest stored event ('0-0' when there is none). */
  async newestId (): Promise<string> {
    const r = await this.redis.xrevrange(this.key, '+', '-', 'COUNT', 1) as RawEntry[]
    return r[0]?.[0] ?? '0-0'
  }

  /**
   * Every stored event after `after`, oldest first, page by page. `gap` is true when events after `after`
   * were trimmed away before they could be read.
   */
  async * replay (after: string, pageSize = 500): AsyncGenerator<StreamEvent, void> {
    let from = after
    for (;;) {
      const page = await this.redis.xrange(this.key, `(${from}`, '+', 'COUNT', pageSize) as RawEntry[]
      for (const raw of page) {
        const e = parseStreamEntry(raw)
        if (e !== undefined) yield e
      }
      const lastRaw = page[page.length - 1]
      if (lastRaw === undefined || page.length < pageSize) return
      from = lastRaw[0]
    }
  }

  /** Whether events after `after` are gone: the oldest stored event is later than the one after `after`. */
  async lostAfter (after: string): Promise<boolean> {
    if (after === '0-0') return false
    const info = await this.redis.xrange(this.key, '-', '+', 'COUNT', 1) as RawEntry[]
    const oldest = info[0]?.[0]
    if (oldest === undefined) return false
    // Entries older than the oldest stored one were trimmed: unless `after` is the one just before it, some
    // were lost. A stream id does not say which id came before, so any `after` older than the oldest counts.
    return compareEventIds(after, oldest) < 0
  }

  /** Calls `fn` with every event appended from now on, until the returned function is called. */
  subscribe (fn: (e: StreamEvent) => void): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  /** Where the tail stands: events up to this id have been (or are being) dispatched. */
  get position (): string { return this.last }

  /** Starts following the stream from its newest event; resolves once it knows where that is. */
  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    for (;;) {
      try { this.last = await this.newestId(); break } catch (err) {
        this.log.warn({ err: { message: (err as Error).message } }, 'event stream not readable yet; retrying')
        await new Promise(resolve => setTimeout(resolve, 1000))
        if (!this.running) return
      }
    }
    this.loop = this.follow()
  }

  private async follow (): Promise<void> {
    while (this.running) {
      try {
        const r = await this.blocking.xread('COUNT', 1000, 'BLOCK', 5000, 'STREAMS', this.key, this.last) as Array<[string, RawEntry[]]> | null
        for (const raw of r?.[0]?.[1] ?? []) {
          this.last = raw[0]
          const e = parseStreamEntry(raw)
          if (e === undefined) continue
          for (const fn of this.listeners) {
            try { fn(e) } catch (err) { this.log.error({ err: { message: (err as Error).message } }, 'event listener failed') }
          }
        }
      } catch (err) {
        if (!this.running) return
        // Redis is down: the connection reconnects by itself; the tail goes on from where it was.
        this.log.warn({ err: { message: (err as Error).message } }, 'event stream read failed; retrying')
        await new Promise(resolve => setTimeout(resolve, 500))
      }
    }
  }

  /** Stops following (the blocking connection must be disconnected by its owner to end a read under way). */
  async stop (): Promise<void> {
    this.running = false
    this.listeners.clear()
  }

  /** Waits for the follow loop to end (after `stop` and the blocking connection's disconnect). */
  async stopped (): Promise<void> { await this.loop?.catch(() => {}) }
}
