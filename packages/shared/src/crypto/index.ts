/**
 * AES-256-GCM sealing of secrets: server credentials at rest (PORTHOLE_SECRET_KEY), console targets and URLs
 * in transit (CONSOLE_TRANSIT_KEY) and console targets at rest (the gateway's CONSOLE_KEY).
 * Each box names its key (`kid`) so keys can be rotated: new boxes use the current key, old boxes open with
 * any key still configured. The additional authenticated data binds a box to its place (a server id, a job
 * id), so a box copied to another record does not open; server credentials are bound to their destination
 * too (`server-secrets.ts`).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto'
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
export * from './sol-wire.js'
