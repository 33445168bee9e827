/** Tenants, API keys (stored by their SHA-256) and server records in Redis. */
import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { ApiKey, Role, StoredServer, Tenant } from '@porthole/contracts'
import { openLegacySecrets, openServerSecrets, randomToken, sealServerSecrets, sha256Hex, type SecretBox } from '../crypto/index.js'
import { keys as keysOf, type Keys } from './redis.js'

export class TenantStore {
  private readonly k: Keys
  constructor (private readonly redis: Redis, ns: string) { this.k = keysOf(ns) }

  async create (name: string): Promise<Tenant> {
    const t: Tenant = { id: randomUUID(), name, createdAt: new Date().toISOString(), suspended: false }
    await this.redis.multi().set(this.k.tenant(t.id), JSON.stringify(t)).zadd(this.k.tenants, Date.now(), t.id).exec()
    return t
  }

  async get (id: string): Promise<Tenant | undefined> {
    const raw = await this.redis.get(this.k.tenant(id))
    return raw === null ? undefined : JSON.parse(raw) as Tenant
  }

  /** Suspends or resumes a tenant; the updated record, or undefined when there is none. */
  async setSuspended (id: string, suspended: boolean, now = new Date()): Promise<Tenant | undefined> {
    const t = await this.get(id)
    if (t === undefined) return undefined
    const next: Tenant = { id: t.id, name: t.name, createdAt: t.createdAt, suspended }
    if (suspended) next.suspendedAt = t.suspended === true && t.suspendedAt !== undefined ? t.suspendedAt : now.toISOString()
    await this.redis.set(this.k.tenant(id), JSON.stringify(next))
    return next
  }

  async list (): Promise<Tenant[]> {
    const ids = await this.redis.zrange(this.k.tenants, 0, -1)
    if (ids.length === 0) return []
    const raws = await this.redis.mget(ids.map(id => this.k.tenant(id)))
    return raws.filter((r): r is string => r !== null).map(r => JSON.parse(r) as Tenant)
  }
}

/** An API key's record; `key` is returned once by `create` and never stored. */
export class ApiKeyStore {
  private readonly k: Keys
  constructor (private readonly redis: Redis, ns: string) { this.k = keysOf(ns) }

  async create (o: { name: string, role: Role, tenantId?: string }): Promise<{ record: ApiKey, key: string }> {
    const record: ApiKey = { id: randomUUID(), name: o.name, role: o.role, createdAt: new Date().toISOString() }
    if (o.tenantId !== undefined) record.tenantId = o.tenantId
    const key = `ph_${randomToken(32)}`
    const hash = sha256Hex(key)
    await this.redis.multi()
      .set(this.k.apiKey(hash), JSON.stringify(record))
      .set(this.k.apiKeyById(record.id), hash)
      .zadd(this.k.apiKeys, Date.now(), record.id)
      .exec()
    return { record, key }
  }

  /** The key's record, looked up by the key's SHA-256. */
  async find (key: string): Promise<ApiKey | undefined> {
    const raw = await this.redis.get(this.k.apiKey(sha256Hex(key)))
    return raw === null ? undefined : JSON.parse(raw) as ApiKey
  }

  async list (): Promise<ApiKey[]> {
    const ids = await this.redis.zrange(this.k.apiKeys, 0, -1)
    if (ids.length === 0) return []
    const hashes = await this.redis.mget(ids.map(id => this.k.apiKeyById(id)))
    const present = hashes.filter((h): h is string => h !== null)
    if (present.length === 0) return []
    const raws = await this.redis.mget(present.map(h => this.k.apiKey(h)))
    return raws.filter((r): r is string => r !== null).map(r => JSON.parse(r) as ApiKey)
  }

  /** Deletes a key; false when there was none. */
  async delete (id: string): Promise<boolean> {
    const hash = await this.redis.get(this.k.apiKeyById(id))
    if (hash === null) return false
    await this.redis.multi().del(this.k.apiKey(hash)).del(this.k.apiKeyById(id)).zrem(this.k.apiKeys, id).exec()
    return true
  }
}

export class ServerStore {
  private readonly k: Keys
  constructor (private readonly redis: Redis, ns: string) { this.k = keysOf(ns) }

  async put (s: StoredServer, previousTenantId?: string): Promise<void> {
    const m = this.redis.multi()
      .set(this.k.server(s.id), JSON.stringify(s))
      .zadd(this.k.servers, Date.parse(s.createdAt), s.id)
      .zadd(this.k.serversByTenant(s.tenantId), Date.parse(s.createdAt), s.id)
    if (previousTenantId !== undefined && previousTenantId !== s.tenantId) m.zrem(this.k.serversByTenant(previousTenantId), s.id)
    await m.exec()
  }

  async get (id: string): Promise<StoredServer | undefined> {
    const raw = await this.redis.get(this.k.server(id))
    return raw === null ? undefined : JSON.parse(raw) as StoredServer
  }

  async list (tenantId?: string): Promise<StoredServer[]> {
    const ids = await this.redis.zrange(tenantId === undefined ? this.k.servers : this.k.serversByTenant(tenantId), 0, -1)
    if (ids.length === 0) return []
    const raws = await this.redis.mget(ids.map(id => this.k.server(id)))
    return raws.filter((r): r is string => r !== null).map(r => JSON.parse(r) as StoredServer)
  }

  async delete (s: StoredServer): Promise<void> {
    await this.redis.multi().del(this.k.server(s.id)).zrem(this.k.servers, s.id).zrem(this.k.serversByTenant(s.tenantId), s.id).exec()
  }

  /**
   * Re-seals, under the current key, every server record whose credentials were sealed with an older one,
   * so that after a key rotation the old key can be dropped from `PORTHOLE_OLD_SECRET_KEYS`; and upgrades
   * records in the earlier form (`secrets`, one box bound to the id only) to boxes bound to their destination
   * (`sealed`), bound to the destination the record names at that moment — only when `upgradeLegacy` says so
   * (the upgrade is a deliberate, one-off step: an old box written into Redis later, from a backup, must not be
   * bound to whatever destination it is written with), and never over a bound box. Each record is replaced only if
   * it did not change meanwhile (compare-and-set). `left` counts records this box cannot open (a key that is
   * not configured, or a destination changed outside the API): they fail their jobs until an admin sets their
   * passwords again.
   */
  async resealStale (box: SecretBox, o: { upgradeLegacy?: boolean } = {}): Promise<{ resealed: number, upgraded: number, left: number, legacy: number }> {
    let resealed = 0
    let upgraded = 0
    let left = 0
    let legacyLeft = 0
    const ids = await this.redis.zrange(this.k.servers, 0, -1)
    for (let i = 0; i < ids.length; i += 500) { // one round trip per 500 records read
      const batch = ids.slice(i, i + 500)
      const raws = await this.redis.mget(batch.map(id => this.k.server(id)))
      for (const raw of raws) {
        if (raw === null) continue
        const s = JSON.parse(raw) as StoredServer
        const legacy = s.secrets !== undefined && o.upgradeLegacy === true
        if (s.secrets !== undefined && !legacy) legacyLeft++
        const stale = Object.values(s.sealed ?? {}).some(b => b !== undefined && box.isStale(b))
        if (!legacy && !stale) continue
        let next: string
        try {
          const secrets = legacy ? { ...openLegacySecrets(box, s), ...openServerSecrets(box, { ...s, secrets: undefined }) } : openServerSecrets(box, { ...s, secrets: undefined })
          const { secrets: legacyBox, sealed: _sealed, ...rest } = s
          // Not upgrading: an earlier-form box stays as it is (ignored by the agents and by PATCH).
          const kept = legacy || legacyBox === undefined ? rest : { ...rest, secrets: legacyBox }
          const sealed = sealServerSecrets(box, s, secrets)
          next = JSON.stringify(sealed === undefined ? kept : { ...kept, sealed })
        } catch {
          left++
          continue
        }
        if (await this.redis.eval(COMPARE_AND_SET, 1, this.k.server(s.id), raw, next) === 1) {
          if (legacy) upgraded++
          else resealed++
        }
      }
    }
    return { resealed, upgraded, left, legacy: legacyLeft }
  }
}

const COMPARE_AND_SET = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0
`
