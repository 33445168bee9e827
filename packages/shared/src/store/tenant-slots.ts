/**
 * Per-tenant slots: how many of a tenant's jobs may be dispatched and unfinished at once, shared by every
 * receiver replica through Redis, so that one tenant's burst cannot fill the agents' prefetch for all. Each
 * lane counts apart (a slot group is `{tenantId}.{lane}`): a tenant's long power actions do not hold back its
 * own status and console jobs, which travel in queues of their own, and the other way round.
 *
 * - `inflight:{group}`: a sorted set of the group's slot-holding job ids, scored by their deadlines. A slot
 *   is freed in the same Lua step that records the job's terminal state (JobStore.transition), by whoever
 *   records it; one whose job never ends there (its record vanished, a process of an older version) is
 *   dropped once its deadline has passed. Nothing counts up without an id attached, so nothing leaks for longer
 *   than one job's life.
 * - `parked:{group}`: the group's jobs waiting for a slot, by deadline (earliest first); each job's message in
 *   `parked-job:{id}`. A freed slot goes to the earliest, which the receiver then dispatches; while it does,
 *   `parked-lease:{id}` marks the job taken. A receiver that dies in between leaves the job parked with its
 *   slot and, once the lease has run out, no lease: the next drain hands it on again. `parked-groups` lists
 *   the groups with parked jobs, for the periodic drain.
 * A parked job is still `queued` and in `jobs:deadlines`: one that never gets a slot times out at its deadline.
 */
import type { Redis } from 'ioredis'
import { laneOf, type Lane } from '../amqp/topology.js'
import type { Job, JobKind } from '@porthole/contracts'
import { keys as keysOf, type Keys } from './redis.js'

/** How long a receiver may take to hand a job with a fresh slot back to RabbitMQ before another may do it. */
export const HANDOFF_LEASE_MS = 10_000
/** Parked job messages outlive their deadline by this much (the sweeper times the job out first). */
const PARKED_KEEP_MS = 60_000

// KEYS: inflight, parked, parked job, parked groups. ARGV: job id, deadline ms, cap, now ms, job json, group
// Returns {admitted (1|0), free slots left}. A job already holding a slot (a redelivery, or one handed back
// from parking) is admitted again. A new job takes a free slot only when none of its group's jobs is parked,
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

// KEYS: inflight, parked, parked groups. ARGV: cap, now ms, parked job prefix, lease prefix, lease ms, group
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

/** The slots of each tenant in each lane. */
export type SlotCaps = Readonly<Record<Lane, number>>

export class TenantSlots {
  private readonly k: Keys

  constructor (private readonly redis: Redis, ns: string, private readonly caps: SlotCaps) {
    this.k = keysOf(ns)
    if (!('portholeSlotAdmit' in redis)) {
      redis.defineCommand('portholeSlotAdmit', { numberOfKeys: 4, lua: ADMIT })
      redis.defineCommand('portholeSlotDrain', { numberOfKeys: 3, lua: DRAIN })
      redis.defineCommand('portholeSlotHandedOff', { numberOfKeys: 3, lua: HANDED_OFF })
    }
  }

  /** The slot group of a tenant's jobs of a kind (the job store's transition script names it the same way). */
  static groupOf (tenantId: string, kind: JobKind): string {
    return `${tenantId}.${laneOf(kind)}`
  }

  /** The lane of a slot group's jobs. */
  static laneOfGroup (group: string): Lane {
    return group.endsWith('.durable') ? 'durable' : 'interactive'
  }

  private capOf (group: string): number {
    return this.caps[TenantSlots.laneOfGroup(group)]
  }

  /**
   * Takes one of the slots of the job's group, or parks the job (keeping its message) until one is free.
   * `free` is the number of slots still free: when a job was parked with slots free, a drain is due.
   */
  async admit (job: Job, now = Date.now()): Promise<{ admitted: boolean, free: number }> {
    const group = TenantSlots.groupOf(job.tenantId, job.kind)
    const r = await (this.redis as unknown as Scripts).portholeSlotAdmit(
      this.k.inFlight(group), this.k.parked(group), this.k.parkedJob(job.id), this.k.parkedGroups,
      job.id, Date.parse(job.deadline), this.capOf(group), now, JSON.stringify(job), group
    )
    return { admitted: r[0] === 1, free: r[1] }
  }

  /**
   * Gives the group's free slots to its earliest parked jobs and returns them, each leased to the caller for
   * HANDOFF_LEASE_MS, to dispatch and then confirm with `handedOff`.
   */
  async drain (group: string, now = Date.now()): Promise<Job[]> {
    const r = await (this.redis as unknown as Scripts).portholeSlotDrain(
      this.k.inFlight(group), this.k.parked(group), this.k.parkedGroups,
      this.capOf(group), now, this.k.parkedJob(''), this.k.parkedLease(''), HANDOFF_LEASE_MS, group
    )
    return r.map(s => JSON.parse(s) as Job)
  }

  /** The job was dispatched (or otherwise dealt with): it is no longer parked. */
  async handedOff (job: Job): Promise<void> {
    await (this.redis as unknown as Scripts).portholeSlotHandedOff(this.k.parked(TenantSlots.groupOf(job.tenantId, job.kind)), this.k.parkedJob(job.id), this.k.parkedLease(job.id), job.id)
  }

  /** Gives the job's slot back without ending the job (a power job that must wait for its server first). */
  async release (job: Job): Promise<void> {
    await this.redis.zrem(this.k.inFlight(TenantSlots.groupOf(job.tenantId, job.kind)), job.id)
  }

  /** The caller could not hand the job on (e.g. the broker is down): the next drain may take it up at once. */
  async unlease (job: Job): Promise<void> {
    await this.redis.del(this.k.parkedLease(job.id))
  }

  /** How many of the tenant's jobs of the kind's lane wait for a slot (the API refuses more past a limit). */
  static async parked (redis: Redis, ns: string, tenantId: string, kind: JobKind): Promise<number> {
    return await redis.zcard(keysOf(ns).parked(TenantSlots.groupOf(tenantId, kind)))
  }

  /** Slot groups with parked jobs. */
  async parkedGroups (): Promise<string[]> {
    return await this.redis.smembers(this.k.parkedGroups)
  }
}

interface Scripts {
  portholeSlotAdmit: (...args: Array<string | number>) => Promise<[number, number]>
  portholeSlotDrain: (...args: Array<string | number>) => Promise<string[]>
  portholeSlotHandedOff: (...args: Array<string | number>) => Promise<number>
}
