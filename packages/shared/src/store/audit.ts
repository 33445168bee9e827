/** The append-only audit log: a Redis stream, capped at about 100,000 entries. */
import type { Redis } from 'ioredis'
import type { AuditEntry } from '../contracts/job.js'
import { keys as keysOf } from './redis.js'

export class AuditLog {
  private readonly key: string
  constructor (private readonly redis: Redis, ns: string, private readonly maxLen = 100_000) { this.key = keysOf(ns).audit }

  async append (e: Omit<AuditEntry, 'at'> & { at?: string }): Promise<void> {
    const entry: AuditEntry = { ...e, at: e.at ?? new Date().toISOString() }
    await this.redis.xadd(this.key, 'MAXLEN', '~', this.maxLen, '*', 'e', JSON.stringify(entry))
  }

  /** Newest first. */
  async list (f: { serverId?: string, tenantId?: string, limit?: number } = {}): Promise<AuditEntry[]> {
    const limit = f.limit ?? 100
    const out: AuditEntry[] = []
    let end = '+'
    for (let scanned = 0; out.length < limit && scanned < 50_000;) {
      const rows = await this.redis.xrevrange(this.key, end, '-', 'COUNT', 500)
      if (rows.length === 0) break
      for (const [id, fields] of rows) {
        end = `(${id}`
        scanned++
        const e = JSON.parse(fields[1] ?? '{}') as AuditEntry
        if (f.serverId !== undefined && e.serverId !== f.serverId) continue
        if (f.tenantId !== undefined && e.tenantId !== f.tenantId) continue
        out.push(e)
        if (out.length === limit) break
      }
    }
    return out
  }
}
