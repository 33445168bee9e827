/**
 * The viewer hub: the live viewers of this replica and the rules of their lives. A viewer is a WebSocket the
 * gateway has accepted on `/s/<sessionId>/ws`; it is admitted by its token (admission.ts), then relayed to
 * its target (relay.ts) until it ends, each way with its own close code (close.ts).
 *
 * Viewers through a share (a second URL for the same screen) watch beside the owner: they neither replace it
 * nor are replaced, are listed for the owner's page (ConsoleShareStore's watchers), end with their share's
 * expiry or their session's, and, view-only, send the target nothing but what drawing the screen takes
 * (view-only.ts). Revoking the session closes them all.
 *
 * One live (owning) viewer per session: a new viewer closes the older one here at once and, through
 * ConsoleSessionStore's events channel, on every other replica. Revocations arrive on the same channel
 * (and a sweep every two seconds catches any event Redis pub/sub dropped). A viewer whose connection died
 * without a close (a laptop lid shut, a network gone) gives no sign of life through two of the gateway's
 * pings and is cut off, which frees its session.
 *
 * Expiry is read from Redis, not kept: when a viewer's expiry comes, the hub reads the session again, and a
 * session renewed meanwhile (`POST /v1/console-sessions/{id}/renew`, or the page's own renewal, on any
 * replica) keeps its viewer until its new expiry. Every event of a session also wakes the page's look-ups
 * waiting on it (`GET /s/<id>/info?wait=`), so that the page's countdown follows a renewal at once.
 */
import type { RawData, WebSocket } from 'ws'
import type { ConsoleTarget } from '@porthole/contracts'
import type { SecretBox } from '@porthole/shared/crypto'
import type { Logger } from '@porthole/shared/logging'
import { parseSessionEvent, type ConsoleSessionStore, type ConsoleShareStore, type Redis } from '@porthole/shared/store'
import { checkToken, resumeHashOf, type TokenCheck } from './admission.js'
import { closeWs, type CloseKind } from './close.js'
import type { GuacBridge } from './guac.js'
import { Relay, type Early } from './relay.js'
import { MAX_EARLY_BYTES, toBuffer, Viewer } from './viewer.js'

export interface HubDeps {
  sessions: ConsoleSessionStore
  shares: ConsoleShareStore
  consoleBox: SecretBox
  guac: GuacBridge
  /** A Redis connection of its own for the events subscription. */
  subscriber: Redis
  idleSeconds: number
  /** SOL_BRIDGE_SECRET, decoded: signs connections to the agents' serial-over-LAN bridges (none: no serial consoles). */
  solSecret?: Buffer | undefined
  /** Seconds between pings to each viewer; one with no sign of life through two pings is cut off (0 = no pings). */
  pingSeconds: number
  /** Seconds a used single-use session's own viewer may come back after it left (CONSOLE_RESUME_GRACE_SECONDS). */
  resumeGraceSeconds: number
  log: Logger
}

/** Times the hub asks an unanswering session store for a viewer's new expiry (a second apart) before it closes the viewer. */
const EXPIRY_RETRIES = 5

export class ViewerHub {
  private readonly bySession = new Map<string, Set<Viewer>>()
  /** Callbacks waiting for the next event of a session (the page's long-polled look-ups). */
  private readonly waiting = new Map<string, Set<() => void>>()
  private readonly log: Logger
  private readonly relay: Relay
  private sweeper: NodeJS.Timeout | undefined

  constructor (private readonly d: HubDeps) {
    this.log = d.log.child({ component: 'viewers' })
    this.relay = new Relay(d)
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
    const waiting = this.waiting.get(e.sessionId)
    if (waiting !== undefined) { this.waiting.delete(e.sessionId); for (const wake of waiting) wake() }
    const set = this.bySession.get(e.sessionId)
    // A renewed session's viewers read their new expiry when the old one comes; watchers are for the pages.
    if (set === undefined || e.type === 'renewed' || e.type === 'watchers') return
    for (const v of set) {
      if (e.type === 'revoked') v.close('revoked')
      else if (v.id !== e.viewerId && v.shareId === undefined) v.close('replaced')
    }
  }

  /** Resolves at the next event of `sessionId` on this replica (revoked, renewed, a viewer came) or after `ms`. */
  async nextEvent (sessionId: string, ms: number, signal?: AbortSignal): Promise<void> {
    await new Promise<void>((resolve) => {
      let set = this.waiting.get(sessionId)
      if (set === undefined) { set = new Set(); this.waiting.set(sessionId, set) }
      const done = (): void => {
        clearTimeout(t)
        signal?.removeEventListener('abort', done)
        const s = this.waiting.get(sessionId)
        s?.delete(done)
        if (s?.size === 0) this.waiting.delete(sessionId)
        resolve()
      }
      const t = setTimeout(done, ms)
      signal?.addEventListener('abort', done, { once: true })
      set.add(done)
    })
  }

  /**
   * Closes the viewer at its session's expiry as Redis has it then: a renewed session is followed to its new
   * expiry; a session store that does not answer is asked again shortly (the session's expiry stands).
   */
  private armExpiry (v: Viewer, expiresAtMs: number, retries = 0): void {
    v.timer(setTimeout(() => {
      Promise.all([this.d.sessions.get(v.session.id), v.shareId === undefined ? undefined : this.d.shares.get(v.shareId)]).then(([s, share]) => {
        if (v.closed) return
        if (s === undefined || s.revokedAt !== undefined) { v.close('revoked'); return }
        // A share's viewer: its share's expiry, which never outlasts the session's.
        const next = Math.min(Date.parse(s.expiresAt), share === undefined ? Infinity : Date.parse(share.expiresAt))
        if (next > Date.now()) {
          v.log.info({ expiresAt: s.expiresAt }, 'console session renewed: viewer kept until its new expiry')
          this.armExpiry(v, next)
        } else v.close('expired')
      }, () => {
        if (retries >= EXPIRY_RETRIES) v.close('expired')
        else this.armExpiry(v, Date.now() + 1000, retries + 1)
      })
    }, Math.max(0, expiresAtMs - Date.now())))
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

  /** Takes over an upgraded WebSocket: admits it, then relays it to its target. */
  async accept (ws: WebSocket, sessionId: string, token: string | undefined, ip: string | undefined, resume?: string): Promise<void> {
    const log = this.log.child({ sessionId, ip })
    // What the page sends before its target is connected is kept for the target, within a bound.
    const early: Early = []
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
      check = await checkToken(this.d, sessionId, token, resume)
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
    const share = check.share
    if (check.resumed) log.info('single-use console resumed by the viewer that used it')
    else if (share === undefined && session.singleUse && !await this.d.sessions.claimUse(session, resumeHashOf(resume)).catch(() => false)) {
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

    const v = new Viewer(ws, session, log.child({ serverId: session.serverId, ...(share === undefined ? {} : { shareId: share.id, viewOnly: share.viewOnly }) }))
    v.shareId = share?.id
    v.viewOnly = share?.viewOnly === true
    // One owning viewer per session: older ones on this replica go now; those elsewhere on the event.
    let set = this.bySession.get(session.id)
    if (set === undefined) { set = new Set(); this.bySession.set(session.id, set) }
    if (share === undefined) for (const old of set) if (old.shareId === undefined) old.close('replaced')
    set.add(v)
    ws.once('close', (code: number) => {
      v.release()
      const s = this.bySession.get(session.id)
      s?.delete(v)
      if (s?.size === 0) this.bySession.delete(session.id)
      if (share !== undefined) void this.d.shares.dropWatcher(session.id, v.id).catch(() => {})
      else void this.d.sessions.dropViewer(session.id, v.id, session.singleUse ? this.d.resumeGraceSeconds : 0).catch(() => {})
      v.log.info({ code }, 'console viewer disconnected')
    })
    // The console starts now, while Redis records the viewer: the target's round trips overlap Redis's. If the
    // record cannot be written the viewer is closed, which ends its relay too.
    ws.off('message', onEarly)
    const relay = this.relay.run(v, target, early).catch((err: unknown) => { // handled here: it may fail while Redis is still answering
      v.log.error({ err: { message: (err as Error).message } }, 'console relay failed')
      ws.terminate()
    })
    try {
      if (share === undefined) await this.d.sessions.takeViewer(session, v.id)
      else {
        const ttl = (Date.parse(share.expiresAt) - Date.now()) / 1000 // a share's viewer ends with its share at the latest
        await this.d.shares.addWatcher(session.id, v.id, { shareId: share.id, viewOnly: share.viewOnly, ...(share.label === undefined ? {} : { label: share.label }), since: new Date().toISOString() }, ttl)
      }
    } catch {
      v.close('unavailable')
    }
    if (!v.closed) {
      this.armExpiry(v, Math.min(Date.parse(session.expiresAt), share === undefined ? Infinity : Date.parse(share.expiresAt)))
      // A kiosk pool's session carries its own idle timeout; any other has the gateway's (0: none).
      const idleSeconds = session.idleSeconds ?? this.d.idleSeconds
      if (idleSeconds > 0) this.armIdle(v, idleSeconds)
      if (this.d.pingSeconds > 0) this.armPing(v)
      v.log.info({ protocol: session.protocol, singleUse: session.singleUse }, 'console viewer connected')
    }
    await relay
  }

  private armIdle (v: Viewer, seconds: number): void {
    const ms = seconds * 1000
    const check = (): void => {
      const left = v.lastInput + ms - Date.now()
      if (left > 0) { v.timer(setTimeout(check, left)); return }
      v.close('idle')
      // A kiosk pool's session ends for good when idle (its VM is destroyed on the event): its URL opens no more.
      if (v.session.idleSeconds !== undefined && v.shareId === undefined) {
        void this.d.sessions.revoke(v.session).catch((err: unknown) => v.log.warn({ err: { message: (err as Error).message } }, 'could not revoke an idle kiosk session'))
      }
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

  /** Closes every viewer (shutdown). */
  closeAll (kind: CloseKind): void {
    if (this.sweeper !== undefined) clearInterval(this.sweeper)
    for (const set of this.bySession.values()) for (const v of set) v.close(kind)
  }
}
