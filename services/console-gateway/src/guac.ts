/**
 * The guacamole side: a viewer the gateway has authenticated is handed to guacamole-lite, which speaks to
 * guacd. The gateway builds guacamole-lite's encrypted token itself (AES-256-CBC in guacamole-lite's own
 * format, keyed from CONSOLE_KEY) and hands it over in process, so the token, the target and the password
 * never reach the browser: the browser only ever presents its Porthole token.
 *
 * Wrapper, not fork: we drive guacamole-lite's ClientConnection directly rather than its Server, because
 * the Server owns a WebSocket server of its own (we authenticate before the hand-off), installs SIGTERM and
 * SIGINT handlers that would fight our shutdown, and writes to console.log on every connection. And we set
 * `noDelay` on its socket to guacd, which guacamole-lite 1.2.0 leaves off (Nagle costs ~40 ms on every
 * connection's handshake; see DESIGN.md "Measured traps"): GuacdClient creates the socket synchronously in
 * `connect()`, and a flag set before the socket connects applies when it does.
 */
import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'
import type { Logger } from '@porthole/shared/logging'
import type { ConsoleTarget } from '@porthole/contracts'

const require = createRequire(import.meta.url)

interface GuacdClient { guacdConnection: Socket }
interface ClientConnection {
  guacdClient?: GuacdClient
  connect: (guacd: { host: string, port: number }) => void
  close: (err?: Error) => void
  on: (ev: 'close', fn: (c: ClientConnection, err?: Error) => void) => void
  state: number
  STATE_OPEN: number
}
type ClientConnectionCtor = new (options: object, id: number, ws: WebSocket, query: Record<string, string>, callbacks: object) => ClientConnection

// Loaded with the first guacamole session, not at start: most consoles are VNC, and the gateway's start is
// on the path of a restart after a crash.
let clientConnection: ClientConnectionCtor | undefined
const loadClientConnection = (): ClientConnectionCtor => (clientConnection ??= require('guacamole-lite/lib/ClientConnection.js') as ClientConnectionCtor)
const LOG_ERRORS = 10 // guacamole-lite's LOGLEVEL.ERRORS: its DEBUG level would log the connect instruction, password included

/** The AES-256 key for guacamole-lite tokens, derived from CONSOLE_KEY. */
export function guacTokenKey (consoleKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', consoleKey, Buffer.alloc(0), 'porthole guacamole-lite token v1', 32))
}

/** guacamole-lite's connection settings for a target; `readOnly`: guacd's read-only mode (a view-only share). */
export function guacConnection (t: ConsoleTarget, o: { readOnly?: boolean } = {}): { connection: { type: string, settings: Record<string, string | number> } } {
  const settings: Record<string, string | number> = { hostname: t.host, port: String(t.port) }
  if (t.password !== undefined) settings.password = t.password
  if (o.readOnly === true) settings['read-only'] = 'true'
  return { connection: { type: 'vnc', settings } }
}

/**
 * Encrypts settings the way guacamole-lite's Crypt expects: base64(JSON {iv, value}), AES-256-CBC.
 * guacamole-lite decodes the IV through an 'ascii' string, which clears each byte's high bit: IV bytes are
 * drawn below 0x80 so that the IV it decodes is the IV we used (112 random bits remain).
 */
export function encryptGuacToken (key: Buffer, data: unknown): string {
  const iv = randomBytes(16)
  for (let i = 0; i < iv.length; i++) iv[i] = (iv[i] as number) & 0x7f
  const c = createCipheriv('aes-256-cbc', key, iv)
  const value = Buffer.concat([c.update(JSON.stringify(data), 'utf8'), c.final()])
  return Buffer.from(JSON.stringify({ iv: iv.toString('base64'), value: value.toString('base64') })).toString('base64')
}

export class GuacBridge {
  private readonly key: Buffer
  private seq = 0
  private readonly options: object

  constructor (consoleKey: Buffer, private readonly guacd: { host: string, port: number }, log: Logger) {
    this.key = guacTokenKey(consoleKey)
    const glog = log.child({ component: 'guacamole-lite' })
    const vncDefaults = { port: '5900', width: 1024, height: 768, dpi: 96, audio: [], video: null, image: ['image/png', 'image/jpeg'], timezone: null }
    this.options = {
      maxInactivityTime: 20_000,
      log: {
        level: LOG_ERRORS,
        // guacamole-lite's error lines name connections and errors, never settings.
        stdLog: (...a: unknown[]) => glog.debug(a.map(String).join(' ')),
        errorLog: (...a: unknown[]) => glog.warn(a.map(x => x instanceof Error ? x.message : String(x)).join(' '))
      },
      crypt: { cypher: 'AES-256-CBC', key: this.key },
      connectionDefaultSettings: { vnc: vncDefaults },
      // Nothing from the browser's query string reaches guacd: the browser sends none.
      allowedUnencryptedConnectionSettings: { vnc: [] }
    }
  }

  /** Hands an authenticated WebSocket to guacamole-lite; `onClose` runs when guacamole-lite lets go. */
  attach (ws: WebSocket, target: ConsoleTarget, o: { readOnly: boolean }, onClose: (err?: Error) => void): { close: () => void } {
    const token = encryptGuacToken(this.key, guacConnection(target, o))
    const ClientConnection = loadClientConnection()
    const cc = new ClientConnection(this.options, ++this.seq, ws, { token }, {
      processConnectionSettings: (s: unknown, cb: (err: unknown, s: unknown) => void) => cb(undefined, s)
    })
    if (cc.state !== cc.STATE_OPEN) { onClose(new Error('guacamole-lite refused the token')); return { close: () => {} } }
    cc.on('close', (_c, err) => onClose(err))
    cc.connect(this.guacd)
    cc.guacdClient?.guacdConnection.setNoDelay(true) // the documented patch: see the top of this file
    return { close: () => cc.close() }
  }
}

/** True when a viewer→guacd message carries keyboard or mouse input (not sync acks, nops or pings). */
export function isGuacInput (msg: string): boolean {
  return /(^|;)\d+\.(key|mouse|touch|clipboard),/.test(msg)
}
