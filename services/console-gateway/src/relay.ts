/**
 * The relay: an admitted viewer to its target, by the session's protocol. VNC directly (the gateway plays
 * the RFB server to the browser, see rfb.ts), a serial console through an agent's serial-over-LAN bridge
 * (see sol.ts), guacamole through guacamole-lite (see guac.ts).
 */
import type { RawData } from 'ws'
import { solTicketOf, type ConsoleTarget, type SolConsoleTarget } from '@porthole/contracts'
import type { SecretBox } from '@porthole/shared/crypto'
import { ConnectionError } from '@porthole/contracts/errors'
import type { ConsoleSessionStore } from '@porthole/shared/store'
import { isGuacInput, type GuacBridge } from './guac.js'
import { acceptViewer, ByteQueue, connectVnc, onlyUpdateRequests } from './rfb.js'
import { SlabPool } from './slabs.js'
import { connectSol, SolTicketRefused, type SolConnection } from './sol.js'
import { ViewOnlyFilter, viewOnlyClientInit } from './view-only.js'
import { attachTarget, MAX_EARLY_BYTES, pipeToViewer, pipeVncToViewer, toBuffer, toTarget, withTimeout, type Viewer } from './viewer.js'

/** What a viewer sent before its relay started: kept for the target. */
export type Early = Array<[RawData, boolean]>

export interface RelayDeps {
  sessions: ConsoleSessionStore
  consoleBox: SecretBox
  guac: GuacBridge
  /** SOL_BRIDGE_SECRET, decoded: signs connections to the agents' serial-over-LAN bridges (none: no serial consoles). */
  solSecret?: Buffer | undefined
}

export class Relay {
  private readonly slabs = new SlabPool()

  constructor (private readonly d: RelayDeps) {}

  /** Relays `v` to `target` until either side ends. */
  async run (v: Viewer, target: ConsoleTarget, early: Early): Promise<void> {
    const p = v.session.protocol
    if (p === 'vnc') await this.vnc(v, target, early)
    else if (p === 'serial') await this.serial(v, target, early)
    else this.guacamole(v, target, early)
  }

  /**
   * The target's handshake (connect, authenticate) and the browser's (with the gateway, which plays the
   * server) run at once: a remote browser's round trips overlap the target's. Nothing from the browser reaches
   * the target before both are done; then the browser's ClientInit, and whatever followed it, goes first.
   */
  private async vnc (v: Viewer, target: ConsoleTarget, early: Early): Promise<void> {
    const ws = v.ws
    const q = new ByteQueue()
    for (const [d] of early) q.push(toBuffer(d))
    let relaying = false
    // A view-only viewer: its ClientInit made shared, then only what drawing the screen takes (view-only.ts).
    const filter = v.viewOnly ? new ViewOnlyFilter() : undefined
    let initSent = false
    const forward = (b: Buffer): void => {
      if (filter === undefined) { toTarget(v, b); return }
      const out = initSent ? filter.push(b) : viewOnlyClientInit(filter, b)
      initSent ||= b.length > 0
      if (out === undefined) { v.log.info('a view-only viewer sent a message the gateway cannot size; closed'); v.close('invalid'); return }
      if (out.length > 0) toTarget(v, out)
    }
    ws.on('message', (d: RawData) => {
      const b = toBuffer(d)
      if (!relaying) {
        q.push(b)
        if (q.size > MAX_EARLY_BYTES) { v.log.info({ bytes: q.size }, 'viewer sent too much before its console was ready'); v.close('invalid') }
        return
      }
      if (!onlyUpdateRequests(b)) v.lastInput = Date.now()
      forward(b)
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
    if (clientInit.length > 0) forward(clientInit)
    if (conn.leftover.length > 0) ws.send(conn.leftover)
    pipeVncToViewer(conn, v, this.slabs)
  }

  /** A serial console: the viewer's bytes (binary or text frames) to the bridge, the bridge's bytes as binary frames. */
  private async serial (v: Viewer, target: ConsoleTarget, early: Early): Promise<void> {
    const ws = v.ws
    const pending: Buffer[] = early.map(([d]) => toBuffer(d))
    let pendingBytes = pending.reduce((n, b) => n + b.length, 0)
    ws.on('message', (d: RawData) => {
      const b = toBuffer(d)
      if (v.viewOnly) return // a view-only viewer's keys never reach the line
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
    let target = serialTarget(first)
    for (let attempt = 0; ; attempt++) {
      const used = target
      try {
        return await connectSol(used, { secret, sessionId: v.session.id, onClaimed: (next) => { void this.keepTicket(v, used, next) } })
      } catch (err) {
        if (!(err instanceof SolTicketRefused) || attempt > 0) throw err
        const s = await this.d.sessions.get(v.session.id)
        if (s === undefined || s.revokedAt !== undefined) throw err
        const fresh = serialTarget(this.d.consoleBox.open<ConsoleTarget>(s.target, s.id))
        if (fresh.ticket === used.ticket) throw err
        target = fresh
      }
    }
  }

  /** Keeps the spent ticket's successor, under `ticket` only (an earlier target's `password` goes). */
  private async keepTicket (v: Viewer, used: SolConsoleTarget, next: string): Promise<void> {
    try {
      const kept: ConsoleTarget = { kind: 'sol', host: used.host, port: used.port, ticket: next }
      await this.d.sessions.replaceTarget(v.session.id, this.d.consoleBox.seal(kept, v.session.id))
    } catch (err) {
      v.log.warn({ err: { message: (err as Error).message } }, 'could not keep the serial console\'s next bridge ticket: this session cannot reconnect')
    }
  }

  private guacamole (v: Viewer, target: ConsoleTarget, early: Early): void {
    v.ws.on('message', (d: RawData) => { if (isGuacInput(toBuffer(d).toString('utf8'))) v.lastInput = Date.now() })
    // View-only: guacd's own read-only mode (it drops the viewer's keys, pointer and clipboard).
    v.guac = this.d.guac.attach(v.ws, target, { readOnly: v.viewOnly }, (err) => {
      if (err !== undefined) v.log.warn({ reason: err.message }, 'guacd connection ended with an error')
      v.close(err === undefined ? 'targetClosed' : 'unreachable')
    })
    for (const [d, binary] of early) v.ws.emit('message', d, binary)
  }
}

/** A session's serial target with its ticket under its own name (targets sealed before `ticket` carry it as `password`). */
function serialTarget (t: ConsoleTarget): SolConsoleTarget & { ticket: string | undefined } {
  if (t.kind !== 'sol') throw new ConnectionError('this console session has no serial console target')
  return { kind: 'sol', host: t.host, port: t.port, ticket: solTicketOf(t) }
}
