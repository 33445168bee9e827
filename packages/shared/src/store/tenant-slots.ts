/**
 * Per-tenant slots: how many of a tenant's jobs may be dispatched and unfinished at once, shared by every
 * receiver replica through Redis, so that one tenant's burst cannot fill the agents' prefetch for all.
 *
 * - `inflight:{tenant}`: a sorted set of the tenant's slot-holding job ids, scored by their deadlines. A slot
 *   is freed in the same Lua step that records the job's terminal state (JobStore.transition), by whoever
 *   records it; one whose job never ends there (its record vanished, a process of an older version) is
 *   dropped once its deadline has passed. Nothing counts up without an id attached, so nothing leaks for longer
 *   than one job's life.
 * - `parked:{tenant}`: the tenant's jobs waiting for a slot, by deadline (earliest first); each job's message in
 *   `parked-job:{id}`. A freed slot goes to the earliest. The job is handed back to RabbitMQ (the receiver
 *   republishes it, and admits it as the slot's holder); while that runs, `parked-lease:{id}` marks it taken.
 *   A receiver that dies in between leaves the job parked with its slot and no lease: the next drain hands it
 *   on again. `parked-tenants` lists the tenants with parked jobs, for the periodic drain.
 * A parked job is still `queued` and in `jobs:deadlines`: one that never gets a slot times out at its deadline.
 */
import type { Redis } from 'ioredis'
import type { Job } from '../contracts/job.js'
import { keys as keysOf, type Keys } from './redis.js'

/** How long a receiver may take to hand a job with a fresh slot back to RabbitMQ before another may do it. */
export const HANDOFF_LEASE_MS = 10_000
/** Parked job messages outlive their deadline by this much (the sweeper times the job out first). */
const PARKED_KEEP_MS = 60_000

// KEYS: inflight, parked, parked job, parked tenants. ARGV: job id, deadline ms, cap, now ms, job json, tenant id
// Returns {admitted (1|0), free slots left}. A job already holding a slot (a redelivery, or one handed back
// from parking) is admitted again. A new job takes a free slot only when none of its tenant's jobs is parked,
// so that parked ones go first; otherwise it is parked.
const ADMIT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1, 0} end
local cap = tonumber(ARGV[3])
local used = redis.call('ZCARD', KEYS[1])
if used < cap and redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return {1, cap - used - 1}
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[5], 'PX', math.max(1, tonumber(ARGV[2]) - tonumber(ARGV[4])) + ${PARKED_KEEP_MS})
redis.call('SADD', KEYS[4], ARGV[6])
return {0, math.max(0, cap - used)}
`

// KEYS: inflight, parked, parked tenants. ARGV: cap, now ms, parked job prefix, lease prefix, lease ms, tenant id
// Gives free slots to the earliest parked jobs and returns their messages, each leased to the caller; also
// returns parked jobs that hold a slot but no lease (their receiver died while handing them on). At most
// 2 × cap entries are looked at: the slot holders among them are at most cap.
const DRAIN = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
local cap = tonumber(ARGV[1])
local free = cap - redis.call('ZCARD', KEYS[1])
local out = {}
local ids = redis.call('ZRANGE', KEYS[2], 0, 2 * cap - 1, 'WITHSCORES')
for i = 1, #ids, 2 do
  local id = ids[i]
  local holds = redis.call('ZSCORE', KEYS[1], id)
  if holds or free > 0 then
    local msg = redis.call('GET', ARGV[3] .. id)
    if not msg then
      redis.call('ZREM', KEYS[2], id)
    elseif redis.call('SET', ARGV[4] .. id, '1', 'PX', ARGV[5], 'NX') then
      if not holds then
        redis.call('ZADD', KEYS[1], ids[i + 1], id)
        free = free - 1
      end
      table.insert(out, msg)
    end
  end
end
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[6]) end
return out
`

// KEYS: parked, parked job, lease. ARGV: job id
const HANDED_OFF = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
`

export class TenantSlots {
  private readonly k: Keys

  constructor (private readonly redis: Redis, ns: string) {
    this.k = keysOf(ns)
    if (!('portholeSlotAdmit' in redis)) {
      redis.defineCommand('portholeSlotAdmit', { numberOfKeys: 4, lua: ADMIT })
      redis.defineCommand('portholeSlotDrain', { numberOfKeys: 3, lua: DRAIN })
      redis.defineCommand('portholeSlotHandedOff', { numberOfKeys: 3, lua: HANDED_OFF })
    }
  }

  /**
   * Takes one of the tenant's `cap` slots for the job, or parks the job (keeping its message) until one is
   * free. `free` is the number of slots still free: when a job was parked with slots free, its tenant's
   * parked jobs wait for a drain.
   */
  async admit (job: Job, cap: number, now = Date.now()): Promise<{ admitted: boolean, free: number }> {
    const r = await (this.redis as unknown as Scripts).portholeSlotAdmit(
      this.k.inFlight(job.tenantId), this.k.parked(job.tenantId), this.k.parkedJob(job.id), this.k.parkedTenants,
      job.id, Date.parse(job.deadline), cap, now, JSON.stringify(job), job.tenantId
    )
    return { admitted: r[0] === 1, free: r[1] }
  }

  /**
   * Gives the tenant's free slots to its earliest parked jobs; returns their messages, for the caller to
   * publish to the receiver again and then confirm with `handedOff`. Jobs returned are leased to the caller
   * for HANDOFF_LEASE_MS.
   */
  async drain (tenantId: string, cap: number, now = Date.now()): Promise<Job[]> {
    const r = await (this.redis as unknown as Scripts).portholeSlotDrain(
      this.k.inFlight(tenantId), this.k.parked(tenantId), this.k.parkedTenants,
      cap, now, this.k.parkedJob(''), this.k.parkedLease(''), HANDOFF_LEASE_MS, tenantId
    )
    return r.map(s => JSON.parse(s) as Job)
  }

  /** The job's message is back in RabbitMQ: it is no longer parked. */
  async handedOff (tenantId: string, jobId: string): Promise<void> {
    await (this.redis as unknown as Scripts).portholeSlotHandedOff(this.k.parked(tenantId), this.k.parkedJob(jobId), this.k.parkedLease(jobId), jobId)
  }

  /** Tenants with parked jobs. */
  async parkedTenants (): Promise<string[]> {
    return await this.redis.smembers(this.k.parkedTenants)
  }

  /** How many of the tenant's jobs hold a slot, and how many are parked (expired entries included until the next admit or drain). */
  async count (tenantId: string): Promise<{ inFlight: number, parked: number }> {
    const [inFlight, parked] = await Promise.all([this.redis.zcard(this.k.inFlight(tenantId)), this.redis.zcard(this.k.parked(tenantId))])
    return { inFlight, parked }
  }
}

interface Scripts {
  portholeSlotAdmit: (...args: Array<string | number>) => Promise<[number, number]>
  portholeSlotDrain: (...args: Array<string | number>) => Promise<string[]>
  portholeSlotHandedOff: (...args: Array<string | number>) => Promise<number>
}
