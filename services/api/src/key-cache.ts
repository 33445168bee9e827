/**
 * Verified API keys, kept in this process for a short time (KEY_CACHE_SECONDS), so that a key's requests do not
 * each cost two Redis reads (its record, its tenant's suspension) before any work: under a flood of requests
 * that a limit refuses, those reads were most of what each refusal cost (issue #8's fair share).
 *
 * Revocation stays immediate:
 * - a key deleted or a tenant suspended through this replica is dropped here before the request that did it
 *   answers (`forget`, where revocation.ts publishes the access event);
 * - on every other replica, when that event (`events:access`) arrives on its subscription;
 * - entries are used only while this process is subscribed to those events: when the subscriber's connection
 *   drops, the cache is emptied and stays off until the subscription is back (`live`), so that an event missed
 *   meanwhile cannot leave a revoked key working;
 * - a lookup that began before a revocation cannot put the key back afterwards (`generation`).
 * Only keys that authenticated are kept (never a refusal), by the SHA-256 of the key, never the key.
 */
import type { Principal } from './auth.js'
import { parseAccessEvent, type AccessEvent } from './limits.js'

interface Entry { p: Principal, until: number }

export class KeyCache {
  private readonly entries = new Map<string, Entry>()
  private gen = 0
  private isLive = false

  constructor (private readonly ttlMs: number, private readonly maxEntries = 10_000) {}

  /** The principal of a key (by its hash) verified less than the TTL ago and not revoked since. */
  get (hash: string, now = Date.now()): Principal | undefined {
    const e = this.entries.get(hash)
    if (e === undefined) return undefined
    if (now < e.until && this.isLive) return { ...e.p }
    this.entries.delete(hash)
    return undefined
  }

  /** Taken before a lookup in Redis, given back to `put`: a revocation in between keeps the result out. */
  generation (): number { return this.gen }

  put (hash: string, p: Principal, generation: number, now = Date.now()): void {
    if (this.ttlMs === 0 || !this.isLive || generation !== this.gen) return
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value as string)
    this.entries.set(hash, { p, until: now + this.ttlMs })
  }

  /** Drops what `c` revokes. */
  forget (c: AccessEvent): void {
    // An ops session's end revokes no API key (the dashboard's sessions are not cached here).
    if (c.type === 'ops-session.ended') return
    this.gen++
    for (const [hash, e] of this.entries) {
      if (c.type === 'api-key.revoked' ? e.p.id === c.apiKeyId : e.p.tenantId === c.tenantId) this.entries.delete(hash)
    }
  }

  /**
   * A message on the access channel (a replica revoked something). One of a kind this code does not know
   * (a newer replica's) empties the cache: whatever it revokes is then read from Redis.
   */
  onMessage (message: string): void {
    const e = parseAccessEvent(message)
    if (e !== undefined) this.forget(e)
    else { this.gen++; this.entries.clear() }
  }

  /** Whether revocations reach this process now (its subscription is up); when not, nothing is kept. */
  live (up: boolean): void {
    if (!up) { this.entries.clear(); this.gen++ }
    this.isLive = up
  }

  get size (): number { return this.entries.size }
}
