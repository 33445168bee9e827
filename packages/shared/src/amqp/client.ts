/**
 * The only importer of amqplib. One connection per process, to the first reachable of the broker's nodes
 * (RABBITMQ_URL: one URL or the cluster's nodes, comma-separated), with:
 * - publisher confirms, and `mandatory` publishing whose returned (unroutable) messages reject the publish;
 *   a message whose node goes away before its confirm is published again on the next connection
 *   (unconfirmed.ts), so a confirmed publish is never lost and an unconfirmed one is not lost either;
 * - manual acks with a bounded prefetch; handlers say ack, dead (dead-letter) or requeue;
 * - reconnection after a broker restart, a lost node or a channel error (amqplib has none): to another node
 *   first, then round the list with capped exponential backoff; the topology is declared again and every
 *   consumer re-subscribed;
 * - Nagle's algorithm off (`noDelay`): with it on, each confirm waits ~40 ms on loopback; and the frames one turn
 *   of the event loop writes leave in one socket write (coalesce.ts), not one write each.
 * While disconnected, or while the broker blocks publishers (a memory or disk alarm), `publish` rejects at once
 * with UnavailableError, so the API can answer 503 at once; a confirm that does not come within
 * `confirmTimeoutMs` rejects it too, so no caller hangs on a broker that stopped answering.
 *
 * Longer than 300 lines on purpose: one class whose connection, channels, consumers and reconnection share one
 * lifecycle (a close during a connect, a consumer re-subscribed after a reconnect); split, each part would reach
 * into the others' state. What stands alone is apart: the node list (nodes.ts), the unconfirmed publishes
 * (unconfirmed.ts), the topology (topology.ts).
 */
import { EventEmitter } from 'node:events'
import amqp from 'amqplib'
import type { ChannelModel, Channel, ConfirmChannel, ConsumeMessage } from 'amqplib'
import { brief, type Logger } from '../logging/index.js'
import { UnavailableError, PortholeError } from '@porthole/contracts/errors'
import { declareTopology } from './topology.js'
import { brokerNodes, closeWithin, nodeAddress, within, withHeartbeat } from './nodes.js'
import { Unconfirmed, type Outgoing } from './unconfirmed.js'
import { amqpSocket, coalesceWrites } from './coalesce.js'

/** How long a message requeued a second time waits before it goes back (doubling per delivery on quorum queues). */
export const REQUEUE_PAUSE_MS = 200

/** The pause before requeueing a message delivered `deliveryCount` times before (0 when the queue does not count). */
export function requeuePause (deliveryCount: number): number {
  return deliveryCount > 0 ? Math.min(4000, REQUEUE_PAUSE_MS * 2 ** (deliveryCount - 1)) : REQUEUE_PAUSE_MS
}

/** What a handler decides for a delivery. */
export type Disposition = 'ack' | 'dead' | 'requeue'

export interface Delivery {
  /** The parsed JSON body, or undefined when the body is not JSON. */
  body: unknown
  raw: ConsumeMessage
  /** How often RabbitMQ delivered this message before (quorum queues count it). */
  deliveryCount: number
}

export type Handler = (d: Delivery) => Promise<Disposition>

export interface ConsumeOptions { prefetch: number }

export interface PublishOptions {
  messageId?: string
  headers?: Record<string, unknown>
  /** Per-message TTL in milliseconds. */
  expiration?: number
  /** Default true: the message survives a broker restart. */
  persistent?: boolean
}

export interface AmqpOptions {
  url: string
  namespace: string
  log: Logger
  /** Shown in RabbitMQ's management UI. */
  name: string
  /** Declare the topology at each connect (default true). */
  declare?: boolean
  backoff?: { initialMs: number, maxMs: number }
  /** How long `publish` waits for the broker's confirm before it fails with UnavailableError (default 5000). */
  confirmTimeoutMs?: number
  /** How long `queueStats` waits for each queue's answer (default 2000). */
  statsTimeoutMs?: number
}

interface Sub { queue: string, handler: Handler, opts: ConsumeOptions, channel?: Channel, tag?: string }

export class AmqpClient extends EventEmitter {
  private conn: ChannelModel | undefined
  private pub: ConfirmChannel | undefined
  /** Publishes waiting for their confirm, on `pub` or (their channel lost) for the next one. */
  private readonly unconfirmed: Unconfirmed
  private readonly nodes: string[]
  /** The node tried first at the next connect: the one after a node that went away. */
  private nodeIndex = 0
  /** `host:port` of the node connected to. */
  private nodeNow: string | undefined
  /** The broker's reason while it blocks this connection's publishers (resource alarm). */
  private blocked: string | undefined
  private readonly subs = new Set<Sub>()
  private closing = false
  private attempt = 0
  private timer: NodeJS.Timeout | undefined
  private readonly returned = new Set<string>()
  private readonly log: Logger
  private firstConnect: Promise<void> | undefined
  private connecting: Promise<void> | undefined
  /** Deliveries whose handler is still running, so close() can wait for them. */
  private inFlight = 0

  constructor (private readonly opts: AmqpOptions) {
    super()
    this.log = opts.log.child({ component: 'amqp' })
    this.nodes = brokerNodes(opts.url)
    this.unconfirmed = new Unconfirmed(
      (o, why) => o.settle(why === 'nacked' ? new UnavailableError('message broker refused the message') : new PortholeError('internal', `unroutable message to ${o.exchange}/${o.routingKey}`)),
      id => this.returned.delete(id))
  }

  get connected (): boolean { return this.pub !== undefined }

  /** `host:port` of the broker node this client is connected to (undefined while disconnected). */
  get node (): string | undefined { return this.pub === undefined ? undefined : this.nodeNow }

  /** How many messages were published again after their node went away before confirming them. */
  get republished (): number { return this.unconfirmed.republished }

  /**
   * Connects, retrying with backoff until it succeeds. Resolves at the first successful connection;
   * `timeoutMs` bounds the wait (the client keeps trying in the background afterwards).
   */
  async start (timeoutMs = 30_000): Promise<void> {
    this.firstConnect ??= new Promise<void>(resolve => {
      this.once('connected', () => resolve())
      void this.connect()
    })
    let t: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      t = setTimeout(() => reject(new UnavailableError(`RabbitMQ not reachable within ${timeoutMs} ms`)), timeoutMs)
    })
    try { await Promise.race([this.firstConnect, timeout]) } finally { clearTimeout(t) }
  }

  private async connect (): Promise<void> {
    if (this.closing || this.connecting !== undefined) return
    this.connecting = this.doConnect().finally(() => { this.connecting = undefined })
    return this.connecting
  }

  /** Tries each node once, starting with `nodeIndex`; backs off when none answers. */
  private async doConnect (): Promise<void> {
    for (let i = 0; i < this.nodes.length && !this.closing; i++) {
      const at = (this.nodeIndex + i) % this.nodes.length
      if (await this.connectTo(at, i === this.nodes.length - 1)) return
    }
    if (!this.closing) this.schedule()
  }

  private async connectTo (at: number, last: boolean): Promise<boolean> {
    const url = this.nodes[at] as string
    let conn: ChannelModel | undefined
    try {
      // A node that is down but not refusing (its host gone) must not hold up the next one for long.
      conn = await amqp.connect(withHeartbeat(url), { noDelay: true, timeout: 3000, clientProperties: { connection_name: this.opts.name } })
      const socket = amqpSocket(conn)
      if (socket !== undefined) coalesceWrites(socket)
      conn.on('error', (err: Error) => this.log.warn({ err: brief(err) }, 'broker connection error'))
      conn.on('close', () => this.onLost(conn))
      conn.on('blocked', (reason: unknown) => {
        if (conn !== this.conn) return
        this.blocked = String(reason)
        this.log.warn({ reason: this.blocked }, 'broker blocks publishing (resource alarm)')
      })
      conn.on('unblocked', () => {
        if (conn !== this.conn) return
        this.blocked = undefined
        this.log.info('broker unblocked publishing')
      })
      const pub = await conn.createConfirmChannel()
      pub.on('error', (err: Error) => this.log.warn({ err: brief(err) }, 'publish channel error'))
      pub.on('close', () => {
        if (pub === this.pub) this.unconfirmed.channelLost()
        this.onLost(conn)
      })
      pub.on('return', (msg: ConsumeMessage) => {
        const id = msg.properties.messageId as string | undefined
        if (id !== undefined) this.returned.add(id)
      })
      if (this.opts.declare !== false) await declareTopology(pub, this.opts.namespace, { replicated: this.nodes.length > 1 })
      // close() was called while this connect was under way: what it opened must not outlive it.
      if (this.closing) { await closeWithin(conn, 2000); return true }
      this.conn = conn
      this.pub = pub
      this.nodeIndex = at
      this.nodeNow = nodeAddress(url)
      this.blocked = undefined
      for (const s of this.subs) await this.subscribe(conn, s)
      const again = this.unconfirmed.replay(pub)
      if (this.attempt > 0 || again > 0) this.log.info({ attempts: this.attempt, node: this.nodeNow, republished: again }, 'broker reconnected')
      this.attempt = 0
      this.emit('connected')
      return true
    } catch (err) {
      // Once per round of the nodes, not once per node: a cluster with one node down must not flood the log.
      if (last) this.log.warn({ err: brief(err), attempt: this.attempt, node: nodeAddress(url) }, 'broker connect failed')
      if (this.conn === conn) { this.pub = undefined; this.conn = undefined }
      if (conn !== undefined) conn.close().catch(() => {})
      return false
    }
  }

  private onLost (conn: ChannelModel | undefined): void {
    if (conn === undefined || conn !== this.conn) return
    this.conn = undefined
    this.pub = undefined
    this.blocked = undefined
    for (const s of this.subs) { s.channel = undefined; s.tag = undefined }
    conn.close().catch(() => {})
    if (this.closing) return
    // Its node is probably gone: the next connect tries the others first.
    this.nodeIndex = (this.nodeIndex + 1) % this.nodes.length
    this.log.warn({ node: this.nodeNow }, 'broker connection lost; reconnecting')
    this.emit('disconnected')
    this.schedule()
  }

  private schedule (): void {
    if (this.closing || this.timer !== undefined) return
    const b = this.opts.backoff ?? { initialMs: 100, maxMs: 5000 }
    const delay = Math.min(b.maxMs, b.initialMs * 2 ** this.attempt) * (0.75 + Math.random() * 0.5)
    this.attempt++
    this.timer = setTimeout(() => { this.timer = undefined; void this.connect() }, delay)
  }

  /**
   * Publishes and resolves when the broker has confirmed the message. Rejects with UnavailableError when not
   * connected, while the broker blocks publishers, when the broker refuses it (nack) or when the confirm does
   * not come within `confirmTimeoutMs` (a connection lost meanwhile is replaced and the message published
   * again, within that time); with PortholeError('internal') when the message was unroutable (returned).
   */
  async publish (exchange: string, routingKey: string, body: unknown, o: PublishOptions = {}): Promise<void> {
    const ch = this.pub
    if (ch === undefined) throw new UnavailableError('message broker unavailable')
    if (this.blocked !== undefined) throw new UnavailableError('message broker is blocked (resource alarm)')
    const messageId = o.messageId ?? crypto.randomUUID()
    const content = Buffer.from(JSON.stringify(body))
    const timeoutMs = this.opts.confirmTimeoutMs ?? 5000
    const started = performance.now()
    await new Promise<void>((resolve, reject) => {
      let done = false
      const out: Outgoing = {
        exchange,
        routingKey,
        content,
        options: {
          mandatory: true,
          persistent: o.persistent ?? true,
          contentType: 'application/json',
          messageId,
          headers: o.headers,
          expiration: o.expiration === undefined ? undefined : String(o.expiration)
        },
        settle: (err?: Error): void => {
          if (done) return
          done = true
          clearTimeout(timer)
          this.unconfirmed.forget(out)
          // For metrics (packages/shared/src/metrics: observeAmqp): the outcome and how long the confirm took.
          this.emit('confirm', err === undefined ? 'ok' : 'error', (performance.now() - started) / 1000)
          if (err === undefined) resolve(); else reject(err)
        }
      }
      const timer = setTimeout(() => out.settle(new UnavailableError(`message broker did not confirm within ${timeoutMs} ms`)), timeoutMs)
      this.unconfirmed.send(ch, out)
    })
  }

  /** Registers a consumer; it is re-subscribed after every reconnect. */
  async consume (queue: string, handler: Handler, opts: ConsumeOptions): Promise<void> {
    const s: Sub = { queue, handler, opts }
    this.subs.add(s)
    if (this.conn !== undefined) await this.subscribe(this.conn, s)
  }

  private async subscribe (conn: ChannelModel, s: Sub): Promise<void> {
    const ch = await conn.createChannel()
    ch.on('error', (err: Error) => this.log.warn({ err: brief(err), queue: s.queue }, 'consumer channel error'))
    ch.on('close', () => { if (s.channel === ch) this.onLost(this.conn) })
    await ch.prefetch(s.opts.prefetch)
    s.channel = ch
    const r = await ch.consume(s.queue, (msg) => {
      if (msg === null) { this.onLost(this.conn); return } // the broker cancelled us (queue deleted)
      void this.deliver(ch, s, msg)
    }, { noAck: false })
    s.tag = r.consumerTag
  }

  private async deliver (ch: Channel, s: Sub, msg: ConsumeMessage): Promise<void> {
    this.inFlight++
    let body: unknown
    try { body = JSON.parse(msg.content.toString('utf8')) } catch { body = undefined }
    const count = Number(msg.properties.headers?.['x-delivery-count'] ?? 0)
    let d: Disposition
    try {
      d = await s.handler({ body, raw: msg, deliveryCount: Number.isFinite(count) ? count : 0 })
    } catch (err) {
      // A handler that throws did not decide: requeue, and the delivery limit bounds the loop.
      this.log.error({ err, queue: s.queue }, 'message handler threw; requeueing')
      d = 'requeue'
    }
    // A message requeued a second time waits first, longer each time: a dependency outage (Redis restarting)
    // is then ridden out over seconds rather than burning a quorum queue's delivery limit in milliseconds, or
    // spinning a classic queue (no limit) until the message's TTL ends it.
    if (d === 'requeue' && msg.fields.redelivered) {
      await new Promise(resolve => setTimeout(resolve, requeuePause(Number.isFinite(count) ? count : 0)))
    }
    try {
      if (s.channel === ch) { // a channel that died took its unacked messages back to the queue
        if (d === 'ack') ch.ack(msg)
        else ch.nack(msg, false, d === 'requeue')
      }
    } catch (err) {
      this.log.warn({ err: brief(err) }, 'ack failed')
    } finally {
      this.inFlight--
      if (this.inFlight === 0) this.emit('idle')
    }
  }

  /** Messages and consumers of each queue (a missing queue is left out). */
  async queueStats (queues: string[]): Promise<Array<{ queue: string, messages: number, consumers: number }>> {
    const conn = this.conn
    if (conn === undefined) throw new UnavailableError('message broker unavailable')
    const out: Array<{ queue: string, messages: number, consumers: number }> = []
    const ms = this.opts.statsTimeoutMs ?? 2000
    for (const q of queues) {
      let abandoned = false
      const ask = async (): Promise<void> => {
        const ch = await conn.createChannel() // checkQueue on a missing queue closes its channel
        ch.on('error', () => {})
        try {
          const r = await ch.checkQueue(q)
          if (!abandoned) out.push({ queue: q, messages: r.messageCount, consumers: r.consumerCount })
        } catch { return /* missing queue */ }
        await ch.close()
      }
      // Bounded: a broker that stopped answering must not hang a /metrics scrape.
      const asked = ask()
      if (!await within(asked, ms)) {
        abandoned = true
        asked.catch(() => {})
        throw new UnavailableError(`message broker did not answer queue statistics within ${ms} ms`)
      }
      await asked // settled: rethrows when no channel could be opened
    }
    return out
  }

  /** A raw channel for tests and tools (topology clean-up). Closed by the caller. */
  async rawChannel (): Promise<Channel> {
    if (this.conn === undefined) throw new UnavailableError('message broker unavailable')
    const ch = await this.conn.createChannel()
    ch.on('error', () => {})
    return ch
  }

  /** Stops consuming, waits up to `graceMs` for running handlers, then closes the connection. */
  async close (graceMs = 5000): Promise<void> {
    this.closing = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    // A connect under way ends first (seeing `closing`, it closes what it opened), so none outlives close().
    if (this.connecting !== undefined) await within(this.connecting, graceMs)
    for (const s of this.subs) {
      if (s.channel !== undefined && s.tag !== undefined) await within(s.channel.cancel(s.tag), 1000)
    }
    if (this.inFlight > 0) {
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, graceMs)
        this.once('idle', () => { clearTimeout(t); resolve() })
      })
    }
    const conn = this.conn
    this.conn = undefined
    this.pub = undefined
    this.unconfirmed.failAll(new UnavailableError('the client closed before the broker confirmed'))
    if (conn !== undefined) await closeWithin(conn, 2000)
  }
}
