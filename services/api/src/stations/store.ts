/**
 * Kiosk stations in Redis, kept as API keys and console tokens are: the secret (256 random bits) is shown
 * once, in the station's URL fragment, and Redis holds only its SHA-256, which indexes the station. A
 * station's current console session is a key of its own that lives until that session's expiry, so a
 * station cannot hold on to a desktop past its maximum. Records outlive their expiry by EXPIRED_GRACE_DAYS
 * so that a kiosk left on an old URL is told "expired", not "unknown"; then Redis drops them.
 */
import { randomUUID } from 'node:crypto'
import { DEFAULT_STATION_TTL_DAYS, type Station } from '@porthole/contracts'
import { randomToken, sha256Hex } from '@porthole/shared/crypto'
import type { Redis } from '@porthole/shared/store'

const DAY_MS = 86_400_000
const EXPIRED_GRACE_DAYS = 30

/** A station's record as stored: never the secret itself. */
export interface StoredStation extends Omit<Station, 'sessionId'> { secretHash: string }

/** The session a station is showing. */
export interface StationSession { sessionId: string, serverId: string, expiresAt: string }

/** Why a presented secret did not open its station. */
export type StationRefusal = 'unknown' | 'expired'

function stationKeys (ns: string) {
  return {
    station: (id: string) => `${ns}:station:${id}`,
    bySecret: (hash: string) => `${ns}:station-secret:${hash}`,
    ofPool: (pool: string) => `${ns}:stations:pool:${pool}`,
    session: (id: string) => `${ns}:station-session:${id}`
  }
}

export class StationStore {
  private readonly k: ReturnType<typeof stationKeys>
  constructor (private readonly redis: Redis, ns: string) { this.k = stationKeys(ns) }

  /** A new station of `pool`; the secret is returned here and never stored. */
  async create (o: { pool: string, tenantId: string, name?: string, createdBy: string, ttlDays?: number }, now = Date.now()): Promise<{ station: StoredStation, secret: string }> {
    const secret = randomToken(32)
    const id = randomUUID()
    const expiresMs = now + (o.ttlDays ?? DEFAULT_STATION_TTL_DAYS) * DAY_MS
    const station: StoredStation = {
      id, pool: o.pool, tenantId: o.tenantId, name: o.name ?? `station ${id.slice(0, 8)}`, createdBy: o.createdBy,
      createdAt: new Date(now).toISOString(), expiresAt: new Date(expiresMs).toISOString(), secretHash: sha256Hex(secret)
    }
    const dropAt = Math.ceil((expiresMs + EXPIRED_GRACE_DAYS * DAY_MS) / 1000)
    await this.redis.multi()
      .set(this.k.station(id), JSON.stringify(station), 'EXAT', dropAt)
      .set(this.k.bySecret(station.secretHash), id, 'EXAT', dropAt)
      .zadd(this.k.ofPool(o.pool), now, id)
      .exec()
    return { station, secret }
  }

  async get (id: string): Promise<StoredStation | undefined> {
    const raw = await this.redis.get(this.k.station(id))
    return raw === null ? undefined : JSON.parse(raw) as StoredStation
  }

  /** The station `id` if `secret` is its own and it has not expired; else why not. */
  async open (id: string, secret: string, now = Date.now()): Promise<{ ok: true, station: StoredStation } | { ok: false, reason: StationRefusal, expiresAt?: string }> {
    const found = await this.redis.get(this.k.bySecret(sha256Hex(secret)))
    if (found !== id) return { ok: false, reason: 'unknown' }
    const s = await this.get(id)
    if (s === undefined) return { ok: false, reason: 'unknown' }
    if (Date.parse(s.expiresAt) <= now) return { ok: false, reason: 'expired', expiresAt: s.expiresAt }
    return { ok: true, station: s }
  }

  /** The pool's stations, oldest first (records Redis dropped after their grace are left out and unlisted). */
  async list (pool: string): Promise<StoredStation[]> {
    const ids = await this.redis.zrange(this.k.ofPool(pool), 0, -1)
    if (ids.length === 0) return []
    const raws = await this.redis.mget(ids.map(id => this.k.station(id)))
    const gone = ids.filter((_, i) => raws[i] === null)
    if (gone.length > 0) await this.redis.zrem(this.k.ofPool(pool), ...gone)
    return raws.filter((r): r is string => r !== null).map(r => JSON.parse(r) as StoredStation)
  }

  /** Deletes a station and its secret; returns the session it was showing (for the caller to end), or false when there was no station. */
  async delete (id: string): Promise<{ session?: StationSession } | false> {
    const s = await this.get(id)
    if (s === undefined) return false
    const res = await this.redis.multi()
      .get(this.k.session(id))
      .del(this.k.station(id), this.k.bySecret(s.secretHash), this.k.session(id))
      .zrem(this.k.ofPool(s.pool), id)
      .exec()
    const raw = res?.[0]?.[1]
    return typeof raw === 'string' ? { session: JSON.parse(raw) as StationSession } : {}
  }

  /**
   * Takes the station's session slot for a hand-out under way (one at a time per station: a double tap
   * starts one desktop); false when it is taken. The hold lasts `holdMs` unless `setSession` replaces it.
   */
  async hold (id: string, holdMs: number): Promise<boolean> {
    return await this.redis.set(this.k.session(id), JSON.stringify({ pending: true }), 'PX', holdMs, 'NX') === 'OK'
  }

  /** Records the session the station shows now, kept until that session's expiry. */
  async setSession (id: string, s: StationSession, now = Date.now()): Promise<void> {
    await this.redis.set(this.k.session(id), JSON.stringify(s), 'PX', Math.max(1, Date.parse(s.expiresAt) - now))
  }

  /** The session the station shows (undefined while none, or while a hand-out is under way). */
  async session (id: string): Promise<StationSession | undefined> {
    const raw = await this.redis.get(this.k.session(id))
    if (raw === null) return undefined
    const v = JSON.parse(raw) as StationSession | { pending: true }
    return 'pending' in v ? undefined : v
  }

  /** Frees the station's slot if it still holds `sessionId` (or the hold of a hand-out that failed, with none). */
  async clearSession (id: string, sessionId?: string): Promise<boolean> {
    const cur = await this.redis.get(this.k.session(id))
    if (cur === null) return false
    const v = JSON.parse(cur) as Partial<StationSession> & { pending?: true }
    if (sessionId === undefined ? v.pending !== true : v.sessionId !== sessionId) return false
    // Deleted only if unchanged since read: a hand-out finishing meanwhile keeps its session.
    return await this.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, this.k.session(id), cur) === 1
  }
}
