/**
 * One live viewer and the plumbing between its WebSocket and its target's socket: connecting to the target
 * (a failure closes the viewer with the reason its page shows), and the byte pipes both ways with
 * backpressure, so that neither a fast browser nor a slow one can grow the gateway's memory.
 */
import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import type { RawData, WebSocket } from 'ws'
import type { ConsoleSession } from '@porthole/contracts'
import { PortholeError } from '@porthole/contracts/errors'
import type { Logger } from '@porthole/shared/logging'
import { CLOSE, closeWs, type CloseKind } from './close.js'
import type { VncConnection } from './rfb.js'
import type { SlabPool } from './slabs.js'

/** How much a viewer may send before its target is connected. */
export const MAX_EARLY_BYTES = 256 * 1024

export const toBuffer = (d: RawData): Buffer => Buffer.isBuffer(d) ? d : Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d)

export class Viewer {
  readonly id = randomUUID()
  closed = false
  tcp: Socket | undefined
  guac: { close: () => void } | undefined
  lastInput = Date.now()
  /** A viewer through a share (its id), not the session's owner; view-only: nothing it sends reaches the target but what it takes to draw the screen. */
  shareId: string | undefined
  viewOnly = false
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

export async function withTimeout<T> (p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { t = setTimeout(() => reject(new Error('timeout')), ms) })])
  } finally { clearTimeout(t) }
}

/**
 * Connects a viewer to its target: on failure the viewer is closed with the reason its page shows; a viewer
 * that left meanwhile drops the new connection. Undefined when there is nothing to relay.
 */
export async function attachTarget<C extends { socket: Socket }> (v: Viewer, connect: () => Promise<C>, what: string): Promise<C | undefined> {
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

/** Backpressure: a slow browser pauses the target rather than growing our memory. */
const PAUSE_ABOVE = 4 * 1024 * 1024
const RESUME_BELOW = 256 * 1024

/**
 * Browser → target, with backpressure the other way round: while the target's socket holds more than
 * PAUSE_ABOVE unsent, the gateway stops reading the browser's WebSocket, so a viewer that sends faster
 * than its target takes cannot grow our memory.
 */
export function toTarget (v: Viewer, b: Buffer): void {
  const tcp = v.tcp
  if (tcp === undefined) return
  tcp.write(b)
  if (tcp.writableLength > PAUSE_ABOVE && !v.ws.isPaused) {
    v.ws.pause()
    tcp.once('drain', () => v.ws.resume())
  }
}

/** Target → browser (a serial console's bridge: little traffic, Node's own read buffers). */
export function pipeToViewer (tcp: Socket, v: Viewer): void {
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

/** VNC target → browser, with the same backpressure, through recycled slabs; resumes the paused target socket. */
export function pipeVncToViewer (conn: VncConnection, v: Viewer, slabs: SlabPool): void {
  const tcp = conn.socket
  const ws = v.ws
  let paused = false
  conn.onBytes((view) => {
    const [chunk, s] = slabs.copy(view)
    ws.send(chunk, (err) => {
      slabs.release(s)
      if (err == null) v.alive = true
      if (paused && ws.bufferedAmount < RESUME_BELOW) { paused = false; tcp.resume() }
    })
    if (!paused && ws.bufferedAmount > PAUSE_ABOVE) { paused = true; tcp.pause() }
  })
  tcp.resume()
}
