/**
 * Live console viewers. A viewer is a WebSocket the gateway has accepted on `/s/<sessionId>/ws`; it is
 * authenticated by the token it presents in `Sec-WebSocket-Protocol` (`porthole.token.<token>`), never by
 * anything in the URL. Then it is relayed to the target (VNC, directly; a serial console, through an
 * agent's serial-over-LAN bridge, see sol.ts) or handed to guacamole-lite.
 *
 * Every way a viewer ends has its own close code, which the console page turns into a sentence:
 * 4000 invalid, 4001 expired, 4002 revoked, 4003 replaced (another viewer took the session), 4004 used (a
 * single-use link opened before), 4005 unreachable (the target did not answer), 4006 target-auth (the
 * target refused the password), 4007 idle, 4008 target-closed, 1001 shutdown, 1013 unavailable.
 *
 * One live viewer per session: a new viewer closes the older one here at once and, through
 * ConsoleSessionStore's events channel, on every other replica. Revocations arrive on the same channel
 * (and a sweep every two seconds catches any event Redis pub/sub dropped). A viewer whose connection died
 * without a close (a laptop lid shut, a network gone) gives no sign of life through two of the gateway's
 * pings and is cut off, which frees its session.
 */
import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import type { RawData, WebSocket } from 'ws'
import type { ConsoleSession, ConsoleTarget } from '@porthole/contracts'
import { safeEqual, sha256Hex, type SecretBox } from '@porthole/shared/crypto'
import { ConnectionError, PortholeError } from '@porthole/contracts/errors'
import type { Logger } from '@porthole/shared/logging'
import { parseSessionEvent, type ConsoleSessionStore, type Redis } from '@porthole/shared/store'
import { isGuacInput, type GuacBridge } from './guac.js'
import { acceptViewer, ByteQueue, connectVnc, onlyUpdateRequests, type VncConnection } from './rfb.js'
import { connectSol, SolTicketRefused, type SolConnection } from './sol.js'

export const CLOSE = {
  invalid: { code: 4000, reason: 'invalid' },
  expired: { code: 4001, reason: 'expired' },
  revoked: { code: 4002, reason: 'revoked' },
  replaced: { code: 4003, reason: 'replaced' },
  used: { code: 4004, reason: 'used' },
  unreachable: { code: 4005, reason: 'unreachable' },
  targetAuth: { code: 4006, reason: 'target-auth' },
  idle: { code: 4007, reason: 'idle' },
  targetClosed: { code: 4008, reason: 'target-closed' },
  shutdown: { code: 1001, reason: 'shutdown' },
  unavailable: { code: 1013, reason: 'unavailable' }
} as const
export type CloseKind = keyof typeof CLOSE

/** The subprotocol prefix that carries the token. */
export const TOKEN_PROTOCOL = 'porthole.token.'
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{22,128}$/

export type TokenCheck = { ok: true, session: ConsoleSession } | { ok: false, reason: 'invalid' | 'expired' | 'revoked' | 'used' }

/**
 * Whether `token` opens session `sessionId`. A token of another session, or none that is known, is
 * `invalid`; the reasons `expired` and `revoked` are only told to the holder of the session's own token.
 * `used` is for the console page's look-up; at connect, single use is claimed atomically instead.
 */
export async function checkToken (sessions: ConsoleSessionStore, sessionId: string, token: string | undefined): Promise<TokenCheck> {
  if (token === undefined || !TOKEN_SHAPE.test(token)) return { ok: false, reason: 'invalid' }
  const hash = sha256Hex(token)
  const live = await sessions.findByTokenHash(hash)
  if (live !== undefined) {
    if (live.id !== sessionId) return { ok: false, reason: 'invalid' }
    if (live.singleUse && live.usedAt !== undefined) return { ok: false, reason: 'used' }
    return { ok: true, session: live }
  }
  const known = await sessions.get(sessionId)
  if (known === undefined || !safeEqual(known.tokenHash, hash)) return { ok: false, reason: 'invalid' }
  if (known.revokedAt !== undefined) return { ok: false, reason: 'revoked' }
  if (Date.parse(known.expiresAt) <= Date.now()) return { ok: false, reason: 'expired' }
  return { ok: false, reason: 'invalid' }
}

/** The token a viewer offered in Sec-WebSocket-Protocol, if any. */
export function tokenFromProtocols (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  for (const p of header.split(',')) {
    const s = p.trim()
    if (s.startsWith(TOKEN_PROTOCOL)) return s.slice(TOKEN_PROTOCOL.length)
  }
  return undefined
}

export interface HubDeps {
  sessions: ConsoleSessionStore
  consoleBox: SecretBox
  guac: GuacBridge
  /** A Redis connection of its own for the events subscription. */
  subscriber: Redis
  idleSeconds: number
  /** SOL_BRIDGE_SECRET, decoded: signs connections to the agents' serial-over-LAN bridges (none: no serial consoles). */
  solSecret?: Buffer | undefined
  /** Seconds between pings to each viewer; one with no sign of life through two pings is cut off (0 = no pings). */
  pingSeconds: number
  log: Logger
}

/** How much a viewer may send before its target is connected. */
const MAX_EARLY_BYTES = 256 * 1024

class Viewer {
  readonly id = randomUUID()
  closed = false
  tcp: Socket | undefined
  guac: { close: () => void } | undefined
  lastInput = Date.now()
  /** A sign of life since the last ping: a pong, a message, or bytes the browser's socket took (see armPing). */
  alive = true
  private readonly timers: NodeJS.Timeout[] = []

  constructor (readonly ws: WebSocket, readonly session: ConsoleSession, readonly log: Logger) {}

  timer (t: NodeJS.Timeout): void {
    if (this.closed) clearTimeout(t)
    else this.timers.push(t)
  }

  close (kind: CloseKind): void {
    if (this.closed) return
    this.closed = true
    this.log.info({ reason: CLOSE[kind].reason }, 'closing console viewer')
    closeWs(this.ws, kind) // first: guacamole-lite, released next, would otherwise close it with its own code
    this.release()
  }

  release (): void {
    this.closed = true
    for (const t of this.timers) clearTimeout(t)
    this.timers.length = 0
    this.tcp?.destroy()
    this.guac?.close()
  }
}

function closeWs (ws: WebSocket, kind: CloseKind): void {
  if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(CLOSE[kind].code, CLOSE[kind].reason)
  // A peer that does not answer the close handshake is cut off rather than left holding the session.
  setTimeout(() => ws.terminate(), 2000).unref()
}

const toBuffer = (d: RawData): Buffer => Buffer.isBuffer(d) ? d : Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d)

export class ViewerHub {
  private readonly bySession = new Map<string, Set<Viewer>>()
  private readonly log: Logger
  private sweeper: NodeJS.Timeout | undefined

  constructor (private readonly d: HubDeps) {
    this.log = d.log.child({ component: 'viewers' })
  }

  async start (): Promise<void> {
    this.d.subscriber.on('message', (_channel: string, msg: string) => this.onEvent(msg))
    await this.d.subscriber.subscribe(this.d.sessions.eventsChannel)
    this.sweeper = setInterval(() => { void this.sweep() }, 2000)
    this.sweeper.unref()
  }

  /** Live viewers on this replica. */
  get count (): number {
    let n = 0
    for (const s of this.bySession.values()) n += s.size
    return n
  }

  private onEvent (msg: string): void {
    const e = parseSessionEvent(msg)
    if (e === undefined) return
    const set = this.bySession.get(e.sessionId)
    if (set === undefined) return
    for (const v of set) {
      if (e.type === 'revoked') v.close('revoked')
      else if (v.id !== e.viewerId) v.close('replaced')
    }
  }

  /** Catches revocations and take-overs whose pub/sub message was lost (e.g. during a Redis reconnect). */
  private async sweep (): Promise<void> {
    for (const [sessionId, set] of this.bySession) {
      try {
        const s = await this.d.sessions.get(sessionId)
        for (const v of set) {
          if (s === undefined || s.revokedAt !== undefined) v.close('revoked')
        }
      } catch { /* Redis down: the next sweep tries again */ }
    }
  }

  /** Takes over an upgraded WebSocket: authenticates it, then connects it to its target. */
  async accept (ws: WebSocket, sessionId: string, token: string | undefined, ip: string | undefined): Promise<void> {
    const log = this.log.child({ sessionId, ip })
    // What the page sends before its target is connected is kept for the target, within a bound.
    const early: Array<[RawData, boolean]> = []
    let earlyBytes = 0
    const onEarly = (d: RawData, binary: boolean): void => {
      earlyBytes += toBuffer(d).length
      if (earlyBytes > MAX_EARLY_BYTES) { log.info({ bytes: earlyBytes }, 'viewer sent too much before its console was ready'); closeWs(ws, 'invalid'); return }
      early.push([d, binary])
    }
    ws.on('message', onEarly)
    ws.on('error', (err) => log.debug({ err: { message: err.message } }, 'viewer socket error'))

    let check: TokenCheck
    try {
      check = await checkToken(this.d.sessions, sessionId, token)
    } catch {
      log.warn('session store unavailable; viewer refused')
      closeWs(ws, 'unavailable')
      return
    }
    if (!check.ok) {
      log.info({ reason: check.reason }, 'console viewer refused')
      closeWs(ws, check.reason)
      return
    }
    const session = check.session
    if (session.singleUse && !await this.d.sessions.claimUse(session).catch(() => false)) {
      log.info({ reason: 'used' }, 'console viewer refused')
      closeWs(ws, 'used')
      return
    }
    if (ws.readyState !== ws.OPEN) return
    let target: ConsoleTarget
    try {
      target = this.d.consoleBox.open<ConsoleTarget>(session.target, session.id)
    } catch (err) {
      log.error({ err: { message: (err as Error).message } }, 'console target did not open')
      closeWs(ws, 'unavailable')
      return
    }

    const v = new Viewer(ws, session, log.child({ serverId: session.serverId }))
    // One viewer per session: older viewers on this replica go now; those elsewhere on the event.
    let set = this.bySession.get(session.id)
    if (set === undefined) { set = new Set(); this.bySession.set(session.id, set) }
    for (const old of set) old.close('replaced')
    set.add(v)
    ws.once('close', (code: number) => {
      v.release()
      const s = this.bySession.get(session.id)
      s?.delete(v)
      if (s?.size === 0) this.bySession.delete(session.id)
      void this.d.sessions.dropViewer(session.id, v.id).catch(() => {})
      v.log.info({ code }, 'console viewer disconnected')
    })
    // The console starts now, while Redis records the viewer: the target's round trips overlap Redis's. If the
    // record cannot be written the viewer is closed, which ends its relay too.
    ws.off('message', onEarly)
    const relay = (session.protocol === 'vnc'
      ? this.relayVnc(v, target, early)
      : session.protocol === 'serial' ? this.relaySerial(v, target, early) : this.handToGuacamole(v, target, early)
    ).catch((err: unknown) => { // handled here: it may fail while Redis is still answering
      v.log.error({ err: { message: (err as Error).message } }, 'console relay failed')
      ws.terminate()
    })
    try {
      await this.d.sessions.takeViewer(session, v.id)
    } catch {
      v.close('unavailable')
    }
    if (!v.closed) {
      v.timer(setTimeout(() => v.close('expired'), Math.max(0, Date.parse(session.expiresAt) - Date.now())))
      if (this.d.idleSeconds > 0) this.armIdle(v)
      if (this.d.pingSeconds > 0) this.armPing(v)
      v.log.info({ protocol: session.protocol, singleUse: session.singleUse }, 'console viewer connected')
    }
    await relay
  }

  private armIdle (v: Viewer): void {
    const ms = this.d.idleSeconds * 1000
    const check = (): void => {
      const left = v.lastInput + ms - Date.now()
      if (left <= 0) v.close('idle')
      else v.timer(setTimeout(check, left))
    }
    v.timer(setTimeout(check, ms))
  }

  /**
   * Pings the viewer every pingSeconds; one that gave no sign of life through two pings is cut off. A pong is
   * one sign, and so is any message or any bytes its socket took: a browser on a slow link with screen updates
   * queued in front of our ping is alive even if the pong comes late. While the gateway itself does not read
   * the viewer (its target is not taking bytes: see toTarget) no pong can reach us, so no ping counts as
   * missed. Pongs are not input: the idle timeout counts messages only.
   */
  private armPing (v: Viewer): void {
    let missed = 0
    const sign = (): void => { v.alive = true }
    v.ws.on('pong', sign)
    v.ws.on('message', sign)
    v.timer(setInterval(() => {
      missed = v.alive || v.ws.isPaused ? 0 : missed + 1
      v.alive = false
      if (missed >= 2) {
        v.log.info({ pingSeconds: this.d.pingSeconds }, 'console viewer gave no sign of life through two pings; cut off')
        v.release()
        v.ws.terminate() // no close handshake with a peer that is gone; the 'close' event frees the session
        return
      }
      v.ws.ping()
    }, this.d.pingSeconds * 1000))
  }

  /**
   * The target's handshake (connect, authenticate) and the browser's (with the gateway, which plays the
   * server) run at once: a remote browser's round trips overlap the target's. Nothing from the browser reaches
   * the target before both are done; then the browser's ClientInit, and whatever followed it, goes first.
   */
  private async relayVnc (v: Viewer, target: ConsoleTarget, early: Array<[RawData, boolean]>): Promise<void> {
    const ws = v.ws
    const q = new ByteQueue()
    for (const [d] of early) q.push(toBuffer(d))
    let relaying = false
    ws.on('message', (d: RawData) => {
      const b = toBuffer(d)
      if (!relaying) {
        q.push(b)
        if (q.size > MAX_EARLY_BYTES) { v.log.info({ bytes: q.size }, 'viewer sent too much before its console was ready'); v.close('invalid') }
        return
      }
      if (!onlyUpdateRequests(b)) v.lastInput = Date.now()
      toTarget(v, b)
    })
    ws.once('close', () => q.fail(new Error('viewer left')))
    const viewerReady = withTimeout(acceptViewer(q, b => ws.send(b)), 15_000)
    // A viewer that fails its handshake is closed at once, whatever the target is doing (attachTarget then
    // drops the target's connection when it comes).
    viewerReady.catch(() => v.close('invalid'))
    const conn = await attachTarget(v, async () => await connectVnc(target), 'console target handshake')
    if (conn === undefined) return
    let rest: Buffer
    try {
      rest = await viewerReady
    } catch {
      return // closed above
    }
    if (v.closed) return
    relaying = true
    const clientInit = Buffer.concat([rest, q.drain()])
    if (clientInit.length > 0) conn.socket.write(clientInit)
    if (conn.leftover.length > 0) ws.send(conn.leftover)
    pipeVncToViewer(conn, v)
  }

  /** A serial console: the viewer's bytes (binary or text frames) to the bridge, the bridge's bytes as binary frames. */
  private async relaySerial (v: Viewer, target: ConsoleTarget, early: Array<[RawData, boolean]>): Promise<void> {
    const ws = v.ws
    const pending: Buffer[] = early.map(([d]) => toBuffer(d))
    let pendingBytes = pending.reduce((n, b) => n + b.length, 0)
    ws.on('message', (d: RawData) => {
      const b = toBuffer(d)
      v.lastInput = Date.now()
      if (v.tcp !== undefined) { toTarget(v, b); return }
      pending.push(b)
      pendingBytes += b.length
      if (pendingBytes > MAX_EARLY_BYTES) { v.log.info({ bytes: pendingBytes }, 'viewer sent too much before its console was ready'); v.close('invalid') }
    })
    const conn = await attachTarget(v, async () => await this.connectSerial(v, target), 'serial console bridge')
    if (conn === undefined) return
    const tcp = conn.socket
    for (const b of pending.splice(0)) toTarget(v, b)
    if (conn.leftover.length > 0) ws.send(conn.leftover)
    pipeToViewer(tcp, v)
    tcp.resume()
  }

  /**
   * A bridge ticket is good for one connection: the bridge takes it and both sides derive its successor,
   * which the session keeps for its next viewer (a reload, a take-over, on any replica). A viewer that read
   * the session just before another viewer's connection spent the ticket tries once more with the successor.
   */
  private async connectSerial (v: Viewer, first: ConsoleTarget): Promise<SolConnection> {
    const secret = this.d.solSecret
    if (secret === undefined) throw new ConnectionError('serial consoles need SOL_BRIDGE_SECRET on the gateway')
    let target = first
    for (let attempt = 0; ; attempt++) {
      const used = target
      try {
        return await connectSol(used, { secret, sessionId: v.session.id, onClaimed: (next) => { void this.keepTicket(v, used, next) } })
      } catch (err) {
        if (!(err instanceof SolTicketRefused) || attempt > 0) throw err
        const s = await this.d.sessions.get(v.session.id)
        if (s === undefined || s.revokedAt !== undefined) throw err
        const fresh = this.d.consoleBox.open<ConsoleTarget>(s.target, s.id)
        if (fresh.password === used.password) throw err
        target = fresh
      }
    }
  }

  private async keepTicket (v: Viewer, used: ConsoleTarget, next: string): Promise<void> {
    try {
      await this.d.sessions.replaceTarget(v.session.id, this.d.consoleBox.seal({ ...used, password: next }, v.session.id))
    } catch (err) {
      v.log.warn({ err: { message: (err as Error).message } }, 'could not keep the serial console\'s next bridge ticket: this session cannot reconnect')
    }
  }

  private async handToGuacamole (v: Viewer, target: ConsoleTarget, early: Array<[RawData, boolean]>): Promise<void> {
    v.ws.on('message', (d: RawData) => { if (isGuacInput(toBuffer(d).toString('utf8'))) v.lastInput = Date.now() })
    v.guac = this.d.guac.attach(v.ws, target, (err) => {
      if (err !== undefined) v.log.warn({ reason: err.message }, 'guacd connection ended with an error')
      v.close(err === undefined ? 'targetClosed' : 'unreachable')
    })
    for (const [d, binary] of early) v.ws.emit('message', d, binary)
  }

  /** Closes every viewer (shutdown). */
  closeAll (kind: CloseKind): void {
    if (this.sweeper !== undefined) clearInterval(this.sweeper)
    for (const set of this.bySession.values()) for (const v of set) v.close(kind)
  }
}

async function withTimeout<T> (p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { t = setTimeout(() => reject(new Error('timeout')), ms) })])
  } finally { clearTimeout(t) }
}

/**
 * Connects a viewer to its target: on failure the viewer is closed with the reason its page shows; a viewer
 * that left meanwhile drops the new connection. Undefined when there is nothing to relay.
 */
async function attachTarget<C extends { socket: Socket }> (v: Viewer, connect: () => Promise<C>, what: string): Promise<C | undefined> {
  let conn: C
  try {
    conn = await connect()
  } catch (err) {
    const code = err instanceof PortholeError ? err.code : 'internal'
    v.log.warn({ code, reason: (err as Error).message }, `${what} failed`)
    v.close(code === 'auth' ? 'targetAuth' : 'unreachable')
    return undefined
  }
  if (v.closed) { conn.socket.destroy(); return undefined }
  v.tcp = conn.socket
  conn.socket.on('error', (err) => v.log.debug({ err: { message: err.message } }, `${what} socket error`))
  conn.socket.on('close', () => v.close('targetClosed'))
  return conn
}

/**
 * Browser → target, with backpressure the other way round: while the target's socket holds more than
 * PAUSE_ABOVE unsent, the gateway stops reading the browser's WebSocket, so a viewer that sends faster
 * than its target takes cannot grow our memory.
 */
function toTarget (v: Viewer, b: Buffer): void {
  const tcp = v.tcp
  if (tcp === undefined) return
  tcp.write(b)
  if (tcp.writableLength > PAUSE_ABOVE && !v.ws.isPaused) {
    v.ws.pause()
    tcp.once('drain', () => v.ws.resume())
  }
}

/** Backpressure: a slow browser pauses the target rather than growing our memory. */
const PAUSE_ABOVE = 4 * 1024 * 1024
const RESUME_BELOW = 256 * 1024

/** Target → browser (a serial console's bridge: little traffic, Node's own read buffers). */
function pipeToViewer (tcp: Socket, v: Viewer): void {
  const ws = v.ws
  let paused = false
  tcp.on('data', (b: Buffer) => {
    ws.send(b, (err) => {
      if (err == null) v.alive = true
      if (paused && ws.bufferedAmount < RESUME_BELOW) { paused = false; tcp.resume() }
    })
    if (!paused && ws.bufferedAmount > PAUSE_ABOVE) { paused = true; tcp.pause() }
  })
}

/**
 * Memory for VNC bytes on their way to browsers, recycled. The target sockets read into one shared buffer
 * (see connectVnc); each read is copied into the current slab, and a slab whose every chunk the browser's
 * socket has taken (the send callback) is filled again, or kept for later. A full-screen stream thus runs on a
 * few slabs instead of a fresh buffer per read, which the garbage collector freed only by full collections.
 */
const SLAB_BYTES = 1024 * 1024
const SPARE_SLABS = 8
interface Slab { buf: Buffer, used: number, live: number }
const spareSlabs: Slab[] = []
let slab: Slab | undefined

/** A copy of `view` in the current slab (the slab is counted as in use until `releaseSlab`). */
function copyToSlab (view: Buffer): [Buffer, Slab | undefined] {
  if (view.length > SLAB_BYTES) return [Buffer.from(view), undefined]
  let s = slab
  if (s === undefined || s.buf.length - s.used < view.length) {
    if (s !== undefined && s.live === 0) s.used = 0
    else slab = s = spareSlabs.pop() ?? { buf: Buffer.allocUnsafe(SLAB_BYTES), used: 0, live: 0 }
  }
  view.copy(s.buf, s.used)
  const chunk = s.buf.subarray(s.used, s.used + view.length)
  s.used += view.length
  s.live++
  return [chunk, s]
}

function releaseSlab (s: Slab | undefined): void {
  if (s === undefined || --s.live > 0) return
  if (s === slab) s.used = 0 // nothing in it is still needed: fill it again from the start
  else if (spareSlabs.length < SPARE_SLABS) { s.used = 0; spareSlabs.push(s) }
}

/** VNC target → browser, with the same backpressure, through recycled slabs; resumes the paused target socket. */
function pipeVncToViewer (conn: VncConnection, v: Viewer): void {
  const tcp = conn.socket
  const ws = v.ws
  let paused = false
  conn.onBytes((view) => {
    const [chunk, s] = copyToSlab(view)
    ws.send(chunk, (err) => {
      releaseSlab(s)
      if (err == null) v.alive = true
      if (paused && ws.bufferedAmount < RESUME_BELOW) { paused = false; tcp.resume() }
    })
    if (!paused && ws.bufferedAmount > PAUSE_ABOVE) { paused = true; tcp.pause() }
  })
  tcp.resume()
}
