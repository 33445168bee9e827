/**
 * AES-256-GCM sealing of secrets: server credentials at rest (PORTHOLE_SECRET_KEY), console targets and URLs
 * in transit (CONSOLE_TRANSIT_KEY) and console targets at rest (the gateway's CONSOLE_KEY).
 * Each box names its key (`kid`) so keys can be rotated: new boxes use the current key, old boxes open with
 * any key still configured. The additional authenticated data binds a box to its place (a server id, a job
 * id), so a box copied to another record does not open; server credentials are bound to their destination
 * too (`server-secrets.ts`).
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Sealed } from '@porthole/contracts'
import { ConfigError } from '../config/index.js'
import { PortholeError } from '@porthole/contracts/errors'

export class SecretBox {
  private readonly keys: Map<string, Buffer>

  constructor (private readonly currentKid: string, keys: Map<string, Buffer>) {
    if (!keys.has(currentKid)) throw new Error(`no key ${currentKid}`)
    for (const [kid, k] of keys) if (k.length !== 32) throw new Error(`key ${kid} is not 32 bytes`)
    this.keys = keys
  }

  /** Builds a box from the `PORTHOLE_SECRET_KEY*` settings; the error names the variable at fault. */
  static fromSettings (s: { PORTHOLE_SECRET_KEY: string, PORTHOLE_SECRET_KEY_ID: string, PORTHOLE_OLD_SECRET_KEYS: string }, names = { key: 'PORTHOLE_SECRET_KEY', old: 'PORTHOLE_OLD_SECRET_KEYS' }): SecretBox {
    const keys = new Map<string, Buffer>()
    keys.set(s.PORTHOLE_SECRET_KEY_ID, decodeKey(s.PORTHOLE_SECRET_KEY, names.key))
    for (const item of s.PORTHOLE_OLD_SECRET_KEYS.split(',').map(x => x.trim()).filter(x => x !== '')) {
      const i = item.indexOf(':')
      if (i <= 0) throw new ConfigError(names.old, 'expected id:base64 pairs separated by commas')
      keys.set(item.slice(0, i), decodeKey(item.slice(i + 1), names.old))
    }
    return new SecretBox(s.PORTHOLE_SECRET_KEY_ID, keys)
  }

  /**
   * Builds the box of the `CONSOLE_TRANSIT_KEY*` settings (agents → gateway → API). The transit key must not
   * be the server credentials key: the gateway, which holds it, would then open every server's passwords.
   */
  static forConsoleTransit (s: { CONSOLE_TRANSIT_KEY: string, CONSOLE_TRANSIT_KEY_ID: string, CONSOLE_OLD_TRANSIT_KEYS: string, PORTHOLE_SECRET_KEY?: string }): SecretBox {
    if (s.PORTHOLE_SECRET_KEY !== undefined && decodeKey(s.PORTHOLE_SECRET_KEY, 'PORTHOLE_SECRET_KEY').equals(decodeKey(s.CONSOLE_TRANSIT_KEY, 'CONSOLE_TRANSIT_KEY'))) {
      throw new ConfigError('CONSOLE_TRANSIT_KEY', 'must differ from PORTHOLE_SECRET_KEY (the console gateway holds it)')
    }
    return SecretBox.fromSettings(
      { PORTHOLE_SECRET_KEY: s.CONSOLE_TRANSIT_KEY, PORTHOLE_SECRET_KEY_ID: s.CONSOLE_TRANSIT_KEY_ID, PORTHOLE_OLD_SECRET_KEYS: s.CONSOLE_OLD_TRANSIT_KEYS },
      { key: 'CONSOLE_TRANSIT_KEY', old: 'CONSOLE_OLD_TRANSIT_KEYS' }
    )
  }

  seal (value: unknown, aad: string): Sealed {
    const key = this.keys.get(this.currentKid) as Buffer
    const iv = randomBytes(12)
    const c = createCipheriv('aes-256-gcm', key, iv)
    c.setAAD(Buffer.from(aad))
    const ct = Buffer.concat([c.update(JSON.stringify(value), 'utf8'), c.final()])
    return { v: 1, kid: this.currentKid, iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), ct: ct.toString('base64') }
  }

  open<T = unknown> (box: Sealed, aad: string): T {
    const key = this.keys.get(box.kid)
    if (key === undefined) throw new PortholeError('internal', `sealed with unknown key ${box.kid}`, { retryable: false })
    try {
      const d = createDecipheriv('aes-256-gcm', key, Buffer.from(box.iv, 'base64'))
      d.setAAD(Buffer.from(aad))
      d.setAuthTag(Buffer.from(box.tag, 'base64'))
      const pt = Buffer.concat([d.update(Buffer.from(box.ct, 'base64')), d.final()])
      return JSON.parse(pt.toString('utf8')) as T
    } catch (err) {
      throw new PortholeError('internal', 'a sealed secret did not open (wrong key or tampered)', { retryable: false, cause: err })
    }
  }

  /** True when a key of this id is configured (the current one or an old one). */
  knows (kid: string): boolean { return this.keys.has(kid) }

  /** True when the box was sealed with an older key and should be sealed again. */
  isStale (box: Sealed): boolean { return box.kid !== this.currentKid }
}

function decodeKey (b64: string, variable: string): Buffer {
  const k = Buffer.from(b64, 'base64')
  if (k.length !== 32) throw new ConfigError(variable, `expected 32 bytes in base64, got ${k.length} bytes`)
  return k
}

/** SHA-256 in hex: how API keys and console tokens are stored. */
export function sha256Hex (s: string): string {
  return createHash('sha256').update(s).digest('hex')
}

/** A random URL-safe token of `bytes` bytes (default 32: 256 bits). */
export function randomToken (bytes = 32): string {
  return randomBytes(bytes).toString('base64url')
}

/** Constant-time string comparison. */
export function safeEqual (a: string, b: string): boolean {
  const x = Buffer.from(a); const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

export * from './server-secrets.js'

/**
 * The serial-over-LAN bridge's hello (docs/messages.md): the console gateway's first line to an agent's bridge,
 * `PORTHOLE-SOL/2 <ticket> <sessionId> <unix ms> <nonce> <mac>`, where `mac` is HMAC-SHA256 keyed with
 * SOL_BRIDGE_SECRET over the other fields. A bridge accepts it only with a valid mac and a time within
 * SOL_HELLO_SKEW_MS of its own; a ticket is good for one connection, and both sides derive its successor from
 * the secret, the ticket and the nonce (`nextSolTicket`), so the successor never travels.
 */
export const SOL_HELLO_PREFIX = 'PORTHOLE-SOL/2 '
/** How far a hello's time may be from the bridge's clock. */
export const SOL_HELLO_SKEW_MS = 30_000
const SOL_TOKEN = /^[A-Za-z0-9_-]{22,128}$/
const SOL_SESSION = /^[0-9a-f-]{36}$/
const SOL_NONCE = /^[A-Za-z0-9_-]{22}$/

/** A hello's fields, once its mac checked out. */
export interface SolHello { token: string, sessionId: string, at: number, nonce: string }

function solMac (secret: Buffer, h: SolHello): Buffer {
  return createHmac('sha256', secret).update(`${SOL_HELLO_PREFIX}\n${h.token}\n${h.sessionId}\n${h.at}\n${h.nonce}`).digest()
}

/** The ticket that replaces `token` once a bridge accepted a hello with `nonce`. */
export function nextSolTicket (secret: Buffer, token: string, nonce: string): string {
  return createHmac('sha256', secret).update(`${SOL_HELLO_PREFIX}next\n${token}\n${nonce}`).digest('base64url')
}

/** The gateway's hello line (with its newline) for `token`, and the ticket that follows it. */
export function writeSolHello (secret: Buffer, token: string, sessionId: string, now = Date.now()): { line: string, next: string } {
  const h: SolHello = { token, sessionId, at: now, nonce: randomBytes(16).toString('base64url') }
  const mac = solMac(secret, h).toString('base64url')
  return { line: `${SOL_HELLO_PREFIX}${token} ${sessionId} ${h.at} ${h.nonce} ${mac}\n`, next: nextSolTicket(secret, token, h.nonce) }
}

/** The hello in `line` (without its newline) when its mac is valid and its time is near `now`; else undefined. */
export function readSolHello (secret: Buffer, line: string, now = Date.now()): SolHello | undefined {
  if (!line.startsWith(SOL_HELLO_PREFIX)) return undefined
  const f = line.slice(SOL_HELLO_PREFIX.length).split(' ')
  if (f.length !== 5) return undefined
  const [token, sessionId, at, nonce, mac] = f as [string, string, string, string, string]
  if (!SOL_TOKEN.test(token) || !SOL_SESSION.test(sessionId) || !/^\d{1,15}$/.test(at) || !SOL_NONCE.test(nonce) || !/^[A-Za-z0-9_-]{43}$/.test(mac)) return undefined
  const h: SolHello = { token, sessionId, at: Number(at), nonce }
  const want = solMac(secret, h)
  const got = Buffer.from(mac, 'base64url')
  if (got.length !== want.length || !timingSafeEqual(got, want)) return undefined
  return Math.abs(now - h.at) <= SOL_HELLO_SKEW_MS ? h : undefined
}
