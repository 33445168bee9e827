/**
 * The serial-over-LAN bridge's tickets (see sol.ts): single-use, kept in Redis (sealed with PORTHOLE_SECRET_KEY,
 * keyed by the token's hash) so that any agent replica can serve them.
 */
import { SOL_TICKET, randomToken, sha256Hex, type SecretBox } from '@porthole/shared/crypto'
import { ConsoleSessionStore, keys, type Redis } from '@porthole/shared/store'
import type { Bmc } from './ipmitool.js'

interface Ticket { bmc: Bmc, expiresAt: number, jobId: string }

/** What a connection got for its ticket. */
export interface ClaimedTicket { bmc: Bmc, expiresAt: number, sessionId: string }

/** Single-use bridge tickets, kept in Redis so any agent replica can serve them. */
export class SolTickets {
  private readonly sessions: ConsoleSessionStore

  constructor (private readonly redis: Redis, private readonly box: SecretBox, private readonly namespace: string) {
    this.sessions = new ConsoleSessionStore(redis, namespace)
  }

  private key (hash: string): string { return keys(this.namespace).solTicket(hash) }

  /** Registers a BMC for console job `jobId`, for `ttlSeconds`; returns the token (the only copy). */
  async register (bmc: Bmc, ttlSeconds: number, jobId: string): Promise<string> {
    const token = randomToken(32)
    await this.put(token, { bmc, expiresAt: Date.now() + ttlSeconds * 1000, jobId })
    return token
  }

  private async put (token: string, t: Ticket): Promise<void> {
    const hash = sha256Hex(token)
    const ttl = Math.max(1, Math.ceil((t.expiresAt - Date.now()) / 1000))
    await this.redis.set(this.key(hash), JSON.stringify(this.box.seal(t, `sol-ticket:${hash}`)), 'EX', ttl)
  }

  /**
   * Takes `token` for one connection of console session `sessionId`, and registers `next` in its place;
   * undefined (and the token gone) when it is unknown, used or expired, or the session is not the one minted
   * from the ticket's job, or is revoked or expired.
   */
  async claim (token: string, sessionId: string, next: string): Promise<ClaimedTicket | undefined> {
    if (!SOL_TICKET.test(token)) return undefined
    const hash = sha256Hex(token)
    const raw = await this.redis.getdel(this.key(hash))
    if (raw === null) return undefined
    let t: Ticket
    try {
      t = this.box.open<Ticket>(JSON.parse(raw), `sol-ticket:${hash}`)
    } catch {
      return undefined
    }
    const now = Date.now()
    const session = await this.sessions.get(sessionId)
    if (t.expiresAt <= now || session === undefined || session.jobId !== t.jobId || session.revokedAt !== undefined) return undefined
    const expiresAt = Math.min(t.expiresAt, Date.parse(session.expiresAt))
    if (expiresAt <= now) return undefined
    await this.put(next, { bmc: t.bmc, expiresAt, jobId: t.jobId })
    return { bmc: t.bmc, expiresAt, sessionId }
  }

  /** Whether each console session is still live (not revoked, not expired). */
  async sessionsLive (sessionIds: string[]): Promise<boolean[]> {
    return await this.sessions.areLive(sessionIds)
  }
}
