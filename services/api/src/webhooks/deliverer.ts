/**
 * Webhook deliveries, made by the API replicas (WEBHOOK_DELIVERY): the API already holds the key that seals
 * webhook secrets (the receiver and the gateway deliberately do not hold PORTHOLE_SECRET_KEY), and calls to
 * customers' URLs stay out of the job path (receiver, agents) altogether, so a slow or hanging endpoint can
 * never hold up a job: it only ever holds one of this loop's bounded, time-limited slots.
 *
 * Two loops per replica:
 * - fan-out: reads the event stream through the `webhooks` consumer group (each event to one replica), records
 *   one delivery per matching webhook and acknowledges the event in one Lua step; events a dead replica had
 *   read but not acknowledged are claimed by another after FAN_OUT_IDLE_MS.
 * - delivery: takes due deliveries under a lease (WebhookStore.claim) up to WEBHOOK_CONCURRENCY, signs and
 *   POSTs each (Standard Webhooks) to the address it checked just before (DNS rebinding gains nothing), and
 *   records the outcome: 2xx delivered; 410 cancelled and the webhook disabled; anything else retried with
 *   exponential backoff until WEBHOOK_RETRY_FOR_SECONDS after the event, then failed.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { hostname } from 'node:os'
import { randomUUID } from 'node:crypto'
import { poolEventView, type ConsoleEvent, type DeliveryAttempt, type JobEvent, type PoolEvent } from '@porthole/contracts'
import type { SecretBox } from '@porthole/shared/crypto'
import { brief, type Logger } from '@porthole/shared/logging'
import { createRedis, keys, parseStreamEntry, runLeased, webhookAad, WEBHOOK_GROUP, type LeasedRun, type Redis, type StoredDelivery, type WebhookStore } from '@porthole/shared/store'
import type { ApiConfig } from '../config.js'
import { eventView } from '../views.js'
import { checkWebhookUrl, pinnedLookup } from './url-guard.js'
import { webhookSignature } from './sign.js'

/** Events read but not acknowledged for this long (their replica died) are taken over by another. */
const FAN_OUT_IDLE_MS = 30_000
const TICK_MS = 200
/** A consumer of the group idle this long with nothing pending belonged to a replica that is gone. */
const GONE_AFTER_MS = 3600_000
/** Bytes of an endpoint's answer read (and thrown away) before the connection is closed. */
const MAX_ANSWER_BYTES = 64 * 1024
/**
 * A webhook whose per-URL slots are all taken has its due deliveries held back (WebhookStore.defer, one step
 * for all of them) until one of its attempts here ends (WebhookStore.resume), or this long at the most (this
 * replica may die meanwhile). So an endpoint that hangs does not have its backlog claimed and put back ahead
 * of other webhooks' deliveries at every tick (bench/src/events.ts), and a fast one with a burst waits for
 * its next free slot only.
 */
const BUSY_WAIT_MS = 2000

export interface DelivererMetrics {
  attempt: (outcome: string, seconds: number) => void
}

export class WebhookDeliverer {
  private readonly consumer = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`
  private blocking: Redis | undefined
  private running = false
  private inFlight = 0
  private readonly perWebhook = new Map<string, number>()
  /** Webhooks whose deliveries this replica held back: until when, and the hold-back's own step. */
  private readonly heldBack = new Map<string, { until: number, done: Promise<unknown> }>()
  private timer: NodeJS.Timeout | undefined
  private fanOutLoop: Promise<void> | undefined
  private readonly attempts = new Set<Promise<void>>()
  /** Aborted at stop: attempts under way end at once (recorded as failed, so retried) instead of holding the stop. */
  private readonly stopping = new AbortController()

  /** The consumer group's clean-up, on the one API replica holding its lease. */
  private cleanup: LeasedRun | undefined

  /** `redis` is the API's ordinary connection (the clean-up's; the loops here have their own). */
  constructor (private readonly d: { config: ApiConfig, redis: Redis, store: WebhookStore, box: SecretBox, log: Logger, metrics?: DelivererMetrics }) {}

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    this.blocking = createRedis(this.d.config, this.d.log.child({ component: 'redis-webhooks' }), 'porthole-api-webhooks', { commandTimeoutMs: 0 })
    this.fanOutLoop = this.fanOut()
    // Every replica claims due deliveries (each under its own lease in the store): delivery is shared work,
    // spread over the replicas' slots; only the group's clean-up is one replica's.
    this.timer = setInterval(() => { this.deliverDue() }, TICK_MS)
    this.cleanup = runLeased(this.d.redis, keys(this.d.config.PORTHOLE_NAMESPACE).lease('api.webhook-consumers'), FAN_OUT_IDLE_MS, async () => { await this.forgetGoneConsumers(this.d.redis) }, this.d.log)
  }

  async stop (): Promise<void> {
    this.running = false
    clearInterval(this.timer)
    await this.cleanup?.stop()
    this.stopping.abort(new Error('the API replica stopped during the attempt'))
    this.blocking?.disconnect()
    await this.fanOutLoop?.catch(() => {})
    // Attempts under way end within their timeout; a lease not recorded is taken again after it.
    await Promise.allSettled([...this.attempts])
  }

  private async fanOut (): Promise<void> {
    const redis = this.blocking as Redis
    let grouped = false
    let reclaimAt = 0
    while (this.running) {
      try {
        if (!grouped) { await this.d.store.ensureGroup(); grouped = true }
        if (Date.now() >= reclaimAt) {
          reclaimAt = Date.now() + FAN_OUT_IDLE_MS / 2
          const r = await redis.xautoclaim(this.d.store.streamKey, WEBHOOK_GROUP, this.consumer, FAN_OUT_IDLE_MS, '0-0', 'COUNT', 100) as [string, Array<[string, string[]] | null>]
          await this.d.store.fanOut((r[1] ?? []).filter((raw): raw is [string, string[]] => raw !== null).map(toFanOut))
        }
        const r = await redis.xreadgroup('GROUP', WEBHOOK_GROUP, this.consumer, 'COUNT', 100, 'BLOCK', 2000, 'STREAMS', this.d.store.streamKey, '>') as Array<[string, Array<[string, string[]]>]> | null
        // A whole batch in one Lua step: its deliveries, and one acknowledgement of all its events. Deliveries
        // start at once when it made some (most events have no webhook to go to; the tick covers the rest).
        const batch = r?.[0]?.[1] ?? []
        if (batch.length > 0 && await this.d.store.fanOut(batch.map(toFanOut)) > 0) this.deliverDue()
      } catch (err) {
        if (!this.running) return
        if (String((err as Error).message).includes('NOGROUP')) grouped = false
        this.d.log.warn({ err: brief(err) }, 'webhook fan-out failed; retrying')
        await new Promise(resolve => setTimeout(resolve, 1000))
      }
    }
  }

  /**
   * Each replica's start joins the group under a new name: names idle for an hour with nothing pending (their
   * replicas are gone; what they had read the fan-out loop claimed) are removed, so the group does not grow forever.
   */
  private async forgetGoneConsumers (redis: Redis): Promise<void> {
    // Before any replica made the group there is nothing to clean.
    const consumers = await redis.xinfo('CONSUMERS', this.d.store.streamKey, WEBHOOK_GROUP).catch((err: Error) => {
      if (err.message.includes('NOGROUP') || err.message.includes('no such key')) return []
      throw err
    }) as unknown[][]
    for (const c of consumers) {
      const f = new Map<string, unknown>()
      for (let i = 0; i + 1 < c.length; i += 2) f.set(String(c[i]), c[i + 1])
      const name = String(f.get('name'))
      if (name !== this.consumer && Number(f.get('pending')) === 0 && Number(f.get('idle')) > GONE_AFTER_MS) await redis.xgroup('DELCONSUMER', this.d.store.streamKey, WEBHOOK_GROUP, name)
    }
  }

  /** Takes as many due deliveries as there are free slots and starts them. */
  private deliverDue (): void {
    if (!this.running) return
    const free = this.d.config.WEBHOOK_CONCURRENCY - this.inFlight
    if (free <= 0) return
    // The lease outlasts the attempt's own timeout, so no other replica takes it while it runs.
    const lease = Date.now() + this.d.config.WEBHOOK_TIMEOUT_SECONDS * 1000 + 30_000
    this.inFlight += free // reserved while the claim runs, so that ticks cannot claim past the limit
    this.d.store.claim(free, lease).then((claimed) => {
      this.inFlight -= free - claimed.length
      for (const c of claimed) {
        const p = this.attempt(c.member, c.lease, c.delivery).catch((err: unknown) => {
          this.d.log.error({ err: brief(err) }, 'webhook delivery failed unexpectedly')
        }).finally(() => { this.inFlight--; this.attempts.delete(p) })
        this.attempts.add(p)
      }
    }, (err: unknown) => {
      this.inFlight -= free
      this.d.log.warn({ err: brief(err) }, 'could not claim webhook deliveries')
    })
  }

  private async attempt (member: string, lease: number, d: StoredDelivery | undefined): Promise<void> {
    if (d === undefined) { await this.d.store.record(member, lease, { outcome: 'cancelled' }); return }
    const webhook = await this.d.store.get(d.webhookId)
    if (webhook === undefined || webhook.disabledAt !== undefined) {
      await this.d.store.record(member, lease, { outcome: 'cancelled' })
      return
    }
    const busy = this.perWebhook.get(webhook.id) ?? 0
    if (busy >= this.d.config.WEBHOOK_CONCURRENCY_PER_URL) {
      // This one and every other due one of the webhook wait, so that other webhooks' deliveries go first.
      const held = this.heldBack.get(webhook.id)
      const until = held !== undefined && held.until > Date.now() ? held.until : Date.now() + BUSY_WAIT_MS
      // The resume (below) waits for this step: run after it, it would find nothing held back yet.
      const done = (async () => {
        await held?.done
        await this.d.store.record(member, lease, { outcome: 'pending', next: until })
        await this.d.store.defer(webhook.id, until)
      })()
      this.heldBack.set(webhook.id, { until, done: done.catch(() => {}) })
      await done
      return
    }
    this.perWebhook.set(webhook.id, busy + 1)
    const log = this.d.log.child({ webhookId: webhook.id, deliveryId: d.id })
    const started = Date.now()
    let status: number | undefined
    let error: string | undefined
    try {
      const secret = this.d.box.open<string>(webhook.secret, webhookAad(webhook.id))
      // Checked again now: the name may resolve elsewhere than at registration.
      const target = await checkWebhookUrl(webhook.url, this.d.config.WEBHOOK_ALLOW_PRIVATE)
      const timestamp = Math.floor(started / 1000)
      status = await this.post(target, {
        'content-type': 'application/json',
        'user-agent': 'Porthole-Webhooks/1',
        'webhook-id': d.id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': webhookSignature(secret, d.id, timestamp, d.body)
      }, d.body)
    } catch (err) {
      error = (err as Error).message
    } finally {
      const n = (this.perWebhook.get(webhook.id) ?? 1) - 1
      if (n <= 0) this.perWebhook.delete(webhook.id); else this.perWebhook.set(webhook.id, n)
      // A slot of this webhook is free: what was held back for one is due again.
      const held = this.heldBack.get(webhook.id)
      if (held !== undefined) {
        this.heldBack.delete(webhook.id)
        await held.done
        await this.d.store.resume(webhook.id, held.until).catch(() => {})
      }
    }
    const ms = Date.now() - started
    const attempt: DeliveryAttempt = { at: new Date(started).toISOString(), ms, ...(status === undefined ? {} : { status }), ...(error === undefined ? {} : { error }) }
    let outcome: StoredDelivery['outcome']
    let next: number | undefined
    if (status !== undefined && status >= 200 && status < 300) outcome = 'delivered'
    else if (status === 410) outcome = 'cancelled'
    else {
      next = Date.now() + this.backoff(d.attempts.length + 1)
      if (next > Date.parse(d.createdAt) + this.d.config.WEBHOOK_RETRY_FOR_SECONDS * 1000) { outcome = 'failed'; next = undefined } else outcome = 'pending'
    }
    this.d.metrics?.attempt(status === undefined ? 'error' : String(status), ms / 1000)
    if (!await this.d.store.record(member, lease, { attempt, outcome, ...(next === undefined ? {} : { next }) })) log.warn('webhook delivery lease lost before its outcome was recorded')
    if (outcome === 'cancelled') {
      await this.d.store.disable(webhook.id, 'the endpoint answered 410 Gone')
      log.info('webhook disabled: its endpoint answered 410 Gone')
    } else if (outcome === 'failed') log.warn({ attempts: d.attempts.length + 1 }, 'webhook delivery given up')
    else if (outcome === 'pending') log.info({ status, error, retryInMs: (next ?? 0) - Date.now() }, 'webhook delivery failed; retrying')
  }

  /** Wait before attempt `n + 1` after `n` failed: doubling from WEBHOOK_RETRY_FIRST_MS, capped, jittered. */
  private backoff (n: number): number {
    const base = Math.min(this.d.config.WEBHOOK_RETRY_FIRST_MS * 2 ** Math.min(n - 1, 30), this.d.config.WEBHOOK_RETRY_MAX_MS)
    return Math.round(base * (1 + Math.random() * 0.1))
  }

  /** POSTs `body` to the checked address; resolves with the status, rejects on a network error or timeout. */
  private async post (target: Awaited<ReturnType<typeof checkWebhookUrl>>, headers: Record<string, string>, body: string): Promise<number> {
    const send = target.url.protocol === 'https:' ? httpsRequest : httpRequest
    const timeoutMs = this.d.config.WEBHOOK_TIMEOUT_SECONDS * 1000
    return await new Promise<number>((resolve, reject) => {
      const req = send(target.url, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, lookup: pinnedLookup(target), agent: false, signal: this.stopping.signal }, (res: IncomingMessage) => {
        let read = 0
        res.on('data', (c: Buffer) => { read += c.length; if (read > MAX_ANSWER_BYTES) res.destroy() })
        res.once('end', () => { clearTimeout(t); resolve(res.statusCode ?? 0) })
        res.once('close', () => { clearTimeout(t); resolve(res.statusCode ?? 0) })
        res.once('error', () => {})
      })
      // One limit for the whole attempt: connecting, sending, and the answer.
      const t = setTimeout(() => { req.destroy(new Error(`no answer within ${this.d.config.WEBHOOK_TIMEOUT_SECONDS} s`)) }, timeoutMs)
      req.once('error', (err) => { clearTimeout(t); reject(err) })
      req.end(body)
    })
  }
}

/**
 * A stream entry as the fan-out takes it: its webhook event type and the body every delivery of it sends. An
 * entry that is not an event is only acknowledged (no tenant, so no webhook).
 */
function toFanOut (raw: [string, string[]]): { id: string, type: string, tenantId: string, body: string } {
  const e = parseStreamEntry(raw)
  if (e === undefined) return { id: raw[0], type: 'unknown', tenantId: '', body: '' }
  const type = e.type === 'job' ? `job.${e.data.state}` : `${e.type}.${e.data.event}`
  const data: JobEvent | ConsoleEvent | PoolEvent = e.type === 'job'
    ? eventView(e.data)
    : e.type === 'pool'
      ? poolEventView(e.data)
      : { sessionId: e.data.sessionId, tenantId: e.data.tenantId, serverId: e.data.serverId, event: e.data.event, at: e.data.at }
  return { id: e.id, type, tenantId: e.data.tenantId, body: JSON.stringify({ type, timestamp: e.data.at, data }) }
}
