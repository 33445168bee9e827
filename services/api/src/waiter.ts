/**
 * One Redis subscriber per process: on the job-ends channel always, dispatching each end to the in-process
 * waiters of its job; on the channel of every job event only while a feed follows them (the ops page), so that
 * a replica parses one message per job rather than four when nobody watches the whole flow. A waiter registers
 * before it re-reads the job, so an end published between the request's read and its subscription cannot be missed.
 */
import type { JobEvent, JobRecord } from '@porthole/contracts'
import { isTerminal } from '@porthole/contracts'
import type { Logger } from '@porthole/shared/logging'
import { parseJobEvent, type JobEventMessage, type JobStore, type Redis } from '@porthole/shared/store'

type Listener = (e: JobEvent) => void

/** A job listened for since before it was published (`JobWaiter.watch`). */
export interface JobWatch {
  /** The job once it is terminal, or as it is when `timeoutMs` runs out (or `signal` aborts); then closed. */
  wait: (timeoutMs: number, signal?: AbortSignal) => Promise<JobRecord | undefined>
  /** Stops listening (without waiting). */
  close: () => void
}
/** Wakes a waiter: with the terminal event (which carries the final record), or with none after a reconnect. */
type Wake = (e?: JobEventMessage) => void

export class JobWaiter {
  private readonly byJob = new Map<string, Set<Wake>>()
  private readonly feeds = new Set<Listener>()
  private readonly others = new Map<string, (message: string) => void>()
  private readonly watchers: Array<(up: boolean) => void> = []
  private subscribed = false
  /** The last change of the subscription to every job event (feed), which the next one waits for. */
  private following: Promise<void> = Promise.resolve()
  private retry: NodeJS.Timeout | undefined
  private closed = false

  constructor (private readonly sub: Redis, private readonly jobs: JobStore, private readonly log: Logger) {
    sub.on('message', (channel: string, message: string) => {
      if (channel === jobs.endsChannel) {
        const e = parseJobEvent(message)
        if (e !== undefined && isTerminal(e.state)) for (const wake of this.byJob.get(e.jobId) ?? []) wake(e)
      } else if (channel === jobs.eventsChannel) {
        const e = this.feeds.size === 0 ? undefined : parseJobEvent(message)
        if (e !== undefined) for (const f of this.feeds) f(e)
      } else this.others.get(channel)?.(message)
    })
    // After a reconnect (ioredis re-subscribes by itself) events may have been missed: wake every waiter
    // so that it re-reads its job.
    sub.on('ready', () => {
      if (!this.subscribed) return
      this.wakeAll()
      // ioredis re-subscribes right after 'ready'; a PING sent after that is answered once it is done.
      setImmediate(() => { this.sub.ping().then(() => this.tell(true), () => {}) })
    })
    sub.on('close', () => this.tell(false))
  }

  /**
   * `fn(false)` when the subscription's connection closes (messages published meanwhile are lost), `fn(true)`
   * once it is subscribed (again).
   */
  onSubscription (fn: (up: boolean) => void): void { this.watchers.push(fn) }

  private tell (up: boolean): void { for (const fn of this.watchers) fn(up) }

  /** Subscribes; while Redis is down it keeps trying in the background. */
  async start (): Promise<void> {
    try {
      // Subscribing before the connection is ready races ioredis' CLIENT SETNAME and costs a reconnect.
      if (this.sub.status !== 'ready') await new Promise<void>((resolve, reject) => { this.sub.once('ready', resolve); this.sub.once('end', reject) })
      await this.sub.subscribe(this.jobs.endsChannel, ...this.others.keys(), ...(this.feeds.size > 0 ? [this.jobs.eventsChannel] : []))
      this.subscribed = true
      this.tell(true)
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message } }, 'job events subscription failed; retrying')
      if (!this.closed) this.retry = setTimeout(() => { this.retry = undefined; void this.start() }, 1000)
    }
  }

  get ready (): boolean { return this.subscribed }

  /** Another channel on the same subscription (call before `start`): its messages go to `fn`. */
  also (channel: string, fn: (message: string) => void): void { this.others.set(channel, fn) }

  /**
   * The job once it is terminal, or as it is when `timeoutMs` runs out (or `signal` aborts); undefined
   * when the job does not exist.
   */
  async wait (jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<JobRecord | undefined> {
    // Listened for before the read: an end published between the read and the wait is heard.
    const w = this.watch(jobId)
    let rec: JobRecord | undefined
    try {
      rec = await this.jobs.get(jobId)
    } catch (err) {
      w.close()
      throw err
    }
    if (rec === undefined || isTerminal(rec.state) || this.closed) { w.close(); return rec }
    return await w.wait(timeoutMs, signal)
  }

  /**
   * Listens for the job's end from now on: called before the job is published, nothing can end it unheard,
   * so that `wait` needs no first read of the job (one Redis round trip less on every call that waits). The
   * caller must `wait` or `close` it.
   */
  watch (jobId: string): JobWatch {
    // null: nothing heard yet; undefined: woken without the record (a reconnect: events may have been missed).
    let heard: JobEventMessage | undefined | null = null
    let wake: Wake | undefined
    const onWake: Wake = (e) => {
      if (wake !== undefined) wake(e)
      else if (heard === null || e?.record !== undefined) heard = e
    }
    let set = this.byJob.get(jobId)
    if (set === undefined) { set = new Set(); this.byJob.set(jobId, set) }
    set.add(onWake)
    const close = (): void => {
      set.delete(onWake)
      if (set.size === 0 && this.byJob.get(jobId) === set) this.byJob.delete(jobId)
    }
    const wait = async (timeoutMs: number, signal?: AbortSignal): Promise<JobRecord | undefined> => {
      let over = false
      const end = (): void => { over = true; wake?.() }
      const timer = setTimeout(end, timeoutMs)
      signal?.addEventListener('abort', end, { once: true })
      try {
        for (;;) {
          let e: JobEventMessage | undefined
          if (heard !== null) { e = heard; heard = null } else if (!over && !this.closed) {
            e = await new Promise<JobEventMessage | undefined>(resolve => { wake = resolve })
            wake = undefined
          }
          if (e?.record !== undefined) return structuredClone(e.record) // each waiter its own: callers may change it
          // Timed out, aborted or closed, or woken after a reconnect: the job as Redis has it.
          const rec = await this.jobs.get(jobId)
          if (rec === undefined || isTerminal(rec.state) || over || this.closed) return rec
        }
      } finally {
        clearTimeout(timer)
        signal?.removeEventListener('abort', end)
        close()
      }
    }
    return { wait, close }
  }

  /**
   * Every job event from when the returned promise resolves (the subscription to them all is made with the first
   * feed and dropped with the last), until the function it resolves to is called.
   */
  async feed (fn: Listener): Promise<() => void> {
    const first = this.feeds.size === 0
    this.feeds.add(fn)
    const stop = (): void => {
      if (!this.feeds.delete(fn) || this.feeds.size > 0 || this.closed) return
      this.following = this.sub.unsubscribe(this.jobs.eventsChannel).then(() => {}, () => {})
    }
    // After a pending unsubscribe, so that the two cannot cross; while not subscribed yet, `start` includes it.
    await this.following
    if (first && this.subscribed) {
      try { await this.sub.subscribe(this.jobs.eventsChannel) } catch (err) { stop(); throw err }
    }
    return stop
  }

  private wakeAll (): void {
    for (const set of this.byJob.values()) for (const w of set) w()
  }

  async close (): Promise<void> {
    this.closed = true
    if (this.retry !== undefined) clearTimeout(this.retry)
    this.wakeAll()
    this.feeds.clear()
  }
}
