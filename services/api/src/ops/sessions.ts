/**
 * Dashboard sessions: a login exchanges an operator's or admin's API key for a random session token, kept
 * in an HttpOnly cookie. Redis holds only the token's SHA-256, with the key's id and role, a CSRF token and
 * the expiry (the record expires with the session). A session lives only as long as its key: every request
 * checks that the key still exists (for the bootstrap token: that PORTHOLE_ADMIN_TOKEN is still the one it
 * logged in with), so deleting the key logs its dashboards out on every replica at once.
 */
import { randomBytes } from 'node:crypto'
import { safeEqual, sha256Hex } from '@porthole/shared/crypto'
import { keys, type Redis } from '@porthole/shared/store'
import type { Principal } from '../auth.js'

export interface OpsSession {
  keyId: string
  role: 'admin' | 'operator'
  csrf: string
  createdAt: string
  expiresAt: string
  /** For the bootstrap token: a fingerprint of the token logged in with (a rotated token ends the session). */
  bootstrap?: string
}

export class OpsSessions {
  private readonly prefix: string
  private readonly bootstrapPrint: string | undefined

  constructor (private readonly redis: Redis, private readonly ns: string, readonly ttlSeconds: number, adminToken: string | undefined) {
    this.prefix = `${ns}:ops:session:`
    this.bootstrapPrint = adminToken === undefined ? undefined : sha256Hex(`porthole-ops-session\n${adminToken}`)
  }

  /** A new session for an operator or admin principal; the token goes into the cookie and nowhere else. */
  async create (p: Principal, now = Date.now()): Promise<{ token: string, session: OpsSession }> {
    if (p.role !== 'admin' && p.role !== 'operator') throw new Error('dashboard sessions are for operators and admins')
    const token = randomBytes(32).toString('base64url')
    const session: OpsSession = {
      keyId: p.id,
      role: p.role,
      csrf: randomBytes(32).toString('base64url'),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + this.ttlSeconds * 1000).toISOString()
    }
    if (p.id === 'bootstrap' && this.bootstrapPrint !== undefined) session.bootstrap = this.bootstrapPrint
    await this.redis.set(this.prefix + sha256Hex(token), JSON.stringify(session), 'EX', this.ttlSeconds)
    return { token, session }
  }

  /** The live session of a cookie's token, or undefined (unknown, expired, or its key is gone). */
  async get (token: string | undefined, now = Date.now()): Promise<OpsSession | undefined> {
    if (token === undefined || token.length < 20 || token.length > 100) return undefined
    const raw = await this.redis.get(this.prefix + sha256Hex(token))
    if (raw === null) return undefined
    const s = JSON.parse(raw) as OpsSession
    if (Date.parse(s.expiresAt) <= now) return undefined
    if (s.keyId === 'bootstrap') {
      if (this.bootstrapPrint === undefined || s.bootstrap === undefined || !safeEqual(s.bootstrap, this.bootstrapPrint)) return undefined
    } else if (await this.redis.exists(keys(this.ns).apiKeyById(s.keyId)) === 0) {
      await this.end(token)
      return undefined
    }
    return s
  }

  async end (token: string): Promise<void> {
    await this.redis.del(this.prefix + sha256Hex(token))
  }
}
