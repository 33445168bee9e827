/**
 * The append-only audit log: one Redis stream per tenant and one for actions without a tenant (tenants and
 * keys managed by an admin), each trimmed by age (MINID) rather than by length, so that no tenant's activity
 * can push another's history out. `list` over all tenants merges the streams by time.
 */
import type { Redis } from 'ioredis'
import type { AuditEntry } from '@porthole/contracts'
import { keys as keysOf, type Keys } from './redis.js'

const DAY_MS = 24 * 3600 * 1000
/** Entries read from one stream per round trip while listing. */
const BATCH = 200
/** The most entries `list` looks at before it stops (filters that match little must not scan forever). */
const SCAN_LIMIT = 50_000

interface Cursor { key: string, end: string, rows: Array<[string, string[]]>, done: boolean }

/** Compares two stream ids (`ms-seq`) numerically. */
function compareIds (a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number)
  const [bm = 0, bs = 0] = b.split('-').map(Number)
  return am !== bm ? am - bm : as - bs
}

export class AuditLog {
  private readonly k: Keys
  private readonly retentionMs: number

  /** `retentionDays`: entries older than this are trimmed on write and never listed. */
  constructor (private readonly redis: Redis, ns: string, retentionDays = 90) {
    this.k = keysOf(ns)
    this.retentionMs = retentionDays * DAY_MS
  }

  /** The stream an entry goes to. */
  streamOf (tenantId: string | undefined): string {
    return tenantId === undefined ? this.k.auditSystem : this.k.auditTenant(tenantId)
  }

  async append (e: Omit<AuditEntry, 'at'> & { at?: string }, now = Date.now()): Promise<void> {
    const entry: AuditEntry = { ...e, at: e.at ?? new Date(now).toISOString() }
    const key = this.streamOf(entry.tenantId)
    const minId = String(now - this.retentionMs)
    // Exact MINID trimming: an approximate one keeps whole stream nodes, entries far past the retention.
    // The stream expires with its newest entry, so a tenant gone quiet leaves nothing behind.
    await this.redis.multi()
      .xadd(key, 'MINID', minId, '*', 'e', JSON.stringify(entry))
      .pexpire(key, this.retentionMs)
      .zadd(this.k.auditStreams, now, key)
      .zremrangebyscore(this.k.auditStreams, '-inf', `(${now - this.retentionMs}`)
      .exec()
  }

  /** Newest first; one tenant's stream when `tenantId` is given, else every stream merged by time. */
  async list (f: { serverId?: string, tenantId?: string, limit?: number } = {}, now = Date.now()): Promise<AuditEntry[]> {
    const limit = f.limit ?? 100
    const oldest = now - this.retentionMs
    const streams = f.tenantId !== undefined
      ? [this.k.auditTenant(f.tenantId)]
      : await this.redis.zrangebyscore(this.k.auditStreams, oldest, '+inf')
    const cursors: Cursor[] = streams.map(key => ({ key, end: '+', rows: [], done: false }))
    const out: AuditEntry[] = []
    for (let scanned = 0; out.length < limit && scanned < SCAN_LIMIT; scanned++) {
      await Promise.all(cursors.filter(c => c.rows.length === 0 && !c.done).map(async c => {
        // Entries past the retention may still sit in a stream nobody wrote to since: never listed.
        c.rows = await this.redis.xrevrange(c.key, c.end, String(oldest), 'COUNT', BATCH) as Array<[string, string[]]>
        if (c.rows.length < BATCH) c.done = true
        const last = c.rows.at(-1)
        if (last !== undefined) c.end = `(${last[0]}`
      }))
      let newest: Cursor | undefined
      for (const c of cursors) {
        const head = c.rows[0]
        if (head !== undefined && (newest === undefined || compareIds(head[0], (newest.rows[0] as [string, string[]])[0]) > 0)) newest = c
      }
      if (newest === undefined) break
      const [, fields] = newest.rows.shift() as [string, string[]]
      const e = JSON.parse(fields[1] ?? '{}') as AuditEntry
      if (f.serverId !== undefined && e.serverId !== f.serverId) continue
      out.push(e)
    }
    return out
  }
}
