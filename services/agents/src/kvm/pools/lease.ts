/**
 * The pool controller's one seam to "only one process does this": a lease in Redis that the holder renews each
 * tick and that runs out by itself when its holder dies. (The shared `runLeased` of store/leases.ts replaces
 * it here once it exists; nothing else in the controller knows how the lease is kept.)
 */
import { randomUUID } from 'node:crypto'
import type { Redis } from '@porthole/shared/store'

export interface Lease {
  /** Takes or renews the lease; true while this process holds it. */
  hold: () => Promise<boolean>
  release: () => Promise<void>
}

// KEYS: lease. ARGV: token, ttl ms. Renews our lease or takes a free one; 1 when we hold it.
const HOLD = `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0`

export function redisLease (redis: Redis, key: string, ttlMs: number): Lease {
  const token = randomUUID()
  return {
    hold: async () => await redis.eval(HOLD, 1, key, token, ttlMs) === 1,
    release: async () => { await redis.eval(RELEASE, 1, key, token) }
  }
}
