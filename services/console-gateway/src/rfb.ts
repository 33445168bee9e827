/**
 * The VNC side of the gateway. The gateway authenticates to the target itself (RFB security type 2, the
 * DES challenge-response, when the target asks for a password; type 1 when it does not) and then offers the
 * browser only security type 1 ("None"): after both handshakes the two streams are relayed byte for byte
 * from ClientInit on. The VNC password therefore never leaves the gateway, and the browser never learns the
 * target's address either.
 */
import { connect, type Socket } from 'node:net'
import { AuthError, ConnectionError, TimeoutError, UnsupportedError } from '@porthole/contracts/errors'
import { vncAuthResponse } from './des.js'

/** Bytes arriving in chunks, read back in exact lengths. */
export class ByteQueue {
  private chunks: Buffer[] = []
  private length = 0
  private waiter: { n: number, resolve: (b: Buffer) => void, reject: (e: Error) => void } | undefined
  private error: Error | undefined

  /** Bytes pushed and not read yet. */
  get size (): number { return this.length }

  push (b: Buffer): void {
    this.chunks.push(b)
    this.length += b.length
    this.pump()
  }

  fail (err: Error): void {
    this.error ??= err
    const w = this.waiter
    this.waiter = undefined
    w?.reject(err)
  }

  async read (n: number): Promise<Buffer> {
    if (this.waiter !== undefined) throw new Error('one read at a time')
    if (this.length >= n) return this.take(n)
    if (this.error !== undefined) throw this.error
    return await new Promise((resolve, reject) => { this.waiter = { n, resolve, reject } })
  }

  /** Everything not read yet. */
  drain (): Buffer {
    const b = Buffer.concat(this.chunks)
    this.chunks = []
    this.length = 0
    return b
  }

  private pump (): void {
    if (this.waiter !== undefined && this.length >= this.waiter.n) {
      const w = this.waiter
      this.waiter = undefined
      w.resolve(this.take(w.n))
    }
  }

  private take (n: number): Buffer {
    const all = Buffer.concat(this.chunks)
    this.chunks = all.length > n ? [all.subarray(n)] : []
    this.length = all.length - n
    return all.subarray(0, n)
  }
}

const VERSION = /^RFB (\d{3})\.(\d{3})\n$/

function parseVersion (b: Buffer): number {
  const m = VERSION.exec(b.toString('latin1'))
  if (m === null) throw new UnsupportedError('the peer does not speak RFB')
  const v = Number(m[1]) + Number(m[2]) / 1000
  if (v < 3.003) throw new UnsupportedError('RFB version older than 3.3')
  // 3.3, 3.7 and 3.8 are the versions RFC 6143 knows; anything newer speaks 3.8; odd minors (3.5, 3.889) speak 3.3.
  return v >= 3.008 ? 3.8 : v >= 3.007 ? 3.7 : 3.3
}

const versionLine = (v: number): Buffer => Buffer.from(v === 3.8 ? 'RFB 003.008\n' : v === 3.7 ? 'RFB 003.007\n' : 'RFB 003.003\n', 'latin1')

async function readReason (q: ByteQueue): Promise<string> {
  const n = (await q.read(4)).readUInt32BE(0)
  return (await q.read(Math.min(n, 4096))).toString('utf8')
}

export interface VncTarget { host: string, port: number, password?: string | undefined }

export interface VncConnection {
  /** Paused: nothing more is read from it until `onBytes` has a receiver and the socket is resumed. */
  socket: Socket
  /** Bytes the target sent after its handshake (normally none: it waits for ClientInit). */
  leftover: Buffer
  /**
   * Where the target's bytes go from now on, instead of 'data' events: `view` is a window on a read buffer
   * all target sockets share, valid only during the call (copy what you keep).
   */
  onBytes: (receive: (view: Buffer) => void) => void
}

/**
 * The one buffer every VNC target socket reads into (net's `onread`). Node's default allocates a fresh 64 KiB
 * buffer per read; relaying a full-screen stream, those queue for the browser's socket long enough to outlive a
 * scavenge, and only full mark-compacts freed them: about one per 40 MB relayed, a tenth of the relay's time
 * and pauses of up to 20 ms. A read's bytes are handed on synchronously, before any other socket reads again,
 * and the relay copies them into memory it recycles (viewers.ts).
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)

/**
 * Connects to a VNC server and completes its handshake up to (not including) ClientInit. Rejects with
 * ConnectionError (unreachable, closed), TimeoutError, AuthError (password refused) or UnsupportedError.
 * Messages never contain the password.
 */
export async function connectVnc (t: VncTarget, timeoutMs = 5000): Promise<VncConnection> {
  const q = new ByteQueue()
  let receive = (view: Buffer): void => q.push(Buffer.from(view))
  const socket = connect({
    host: t.host,
    port: t.port,
    noDelay: true,
    onread: { buffer: READ_BUFFER, callback: (n: number) => { receive(READ_BUFFER.subarray(0, n)); return true } }
  })
  const onError = (err: Error): void => q.fail(new ConnectionError('console target unreachable', err))
  const onClose = (): void => q.fail(new ConnectionError('console target closed the connection during the handshake'))
  socket.on('error', onError)
  socket.on('close', onClose)
  const timer = setTimeout(() => q.fail(new TimeoutError(`console target did not answer within ${timeoutMs} ms`)), timeoutMs)
  try {
    const version = parseVersion(await q.read(12))
    socket.write(versionLine(version))
    let type: number
    if (version === 3.3) {
      type = (await q.read(4)).readUInt32BE(0)
      if (type === 0) throw new ConnectionError(`console target refused the connection: ${await readReason(q)}`)
    } else {
      const n = (await q.read(1))[0] as number
      if (n === 0) throw new ConnectionError(`console target refused the connection: ${await readReason(q)}`)
      const offered = [...await q.read(n)]
      if (offered.includes(1)) type = 1
      else if (offered.includes(2)) type = 2
      else throw new UnsupportedError(`console target offers no supported security type (offered ${offered.join(', ')})`)
      socket.write(Buffer.from([type]))
    }
    if (type === 2) {
      if (t.password === undefined) throw new AuthError('console target wants a password and none is known')
      const challenge = await q.read(16)
      socket.write(vncAuthResponse(t.password, challenge))
    } else if (type !== 1) {
      throw new UnsupportedError(`console target wants security type ${type}`)
    }
    if (type === 2 || version === 3.8) {
      const result = (await q.read(4)).readUInt32BE(0)
      if (result !== 0) {
        const reason = version === 3.8 ? await readReason(q) : 'authentication failed'
        throw new AuthError(`console target refused the credentials: ${reason}`)
      }
    }
    // Anything read after this is in `q` too, hence leftover.
    socket.pause()
    return { socket, leftover: q.drain(), onBytes: (r) => { receive = r } }
  } catch (err) {
    socket.destroy()
    throw err
  } finally {
    clearTimeout(timer)
    socket.off('error', onError)
    socket.off('close', onClose)
  }
}

/**
 * Plays the server's part of the handshake towards the browser, offering only "None" security (the
 * gateway has authenticated the viewer by its token already). Resolves with what the browser sent after
 * the handshake (its ClientInit), to be forwarded to the target.
 */
export async function acceptViewer (q: ByteQueue, send: (b: Buffer) => void): Promise<Buffer> {
  send(versionLine(3.8))
  const version = parseVersion(await q.read(12))
  if (version === 3.3) {
    send(u32(1))
  } else {
    send(Buffer.from([1, 1]))
    const chosen = (await q.read(1))[0]
    if (chosen !== 1) throw new UnsupportedError('the viewer chose a security type that was not offered')
    if (version === 3.8) send(u32(0))
  }
  return q.drain()
}

function u32 (n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}

/**
 * True when a viewer→server chunk holds only FramebufferUpdateRequests (type 3, 10 bytes each), which
 * noVNC sends continuously: such traffic is not user input and does not count against the idle timeout.
 */
export function onlyUpdateRequests (b: Buffer): boolean {
  if (b.length === 0 || b.length % 10 !== 0) return false
  for (let i = 0; i < b.length; i += 10) if (b[i] !== 3) return false
  return true
}
