/**
 * Job state in Redis. Every change goes through one Lua script, so that concurrent writers (several
 * receivers, the deadline sweeper, a late agent answer) cannot move a job backwards or out of a terminal
 * state, and every change is published on the job-events channel (an end on the job-ends channel too) and appended
 * to the event stream in the same step.
 */
import type { Redis } from 'ioredis'
import type { Job, JobEvent, JobFailure, JobKind, JobRecord, JobResult, JobState } from '@porthole/contracts'
import { EVENT_STREAM_MAX_LENGTH, xaddLua } from './events.js'
import { keys as keysOf, type Keys } from './redis.js'

/**
 * How the scripts build the JobEvent they publish: each member of the contract as a Lua expression of the job's
 * record (`job`), its new state (`state`) and that state's time (`at`). Typed by the contract, so that a member
 * added to JobEvent fails the build until the scripts fill it; a test checks what they publish against the schema.
 */
const EVENT_MEMBERS: Record<keyof JobEvent, string> = {
  jobId: 'job.id',
  tenantId: 'job.tenantId',
  serverId: 'job.serverId',
  kind: 'job.kind',
  state: 'state',
  at: 'at'
}
const LUA_EVENT = `local function event (job, state, at) return {${Object.entries(EVENT_MEMBERS).map(([k, v]) => `${k} = ${v}`).join(', ')}} end`

/** Jobs are kept this long after their last change. */
export const JOB_RETENTION_SECONDS = 7 * 24 * 3600

// KEYS: job, deadlines, byServer, byTenant, all, idempotency ('' for none)
// ARGV: record json, createdAt ms, deadline ms, retention s, idempotency ttl s, events channel, event stream, its max length
// Each create also drops the index entries older than the retention (their records have expired), so the
// indexes stay bounded without a separate clean-up job.
const CREATE = `
${LUA_EVENT}
if KEYS[6] ~= '' then
  local existing = redis.call('GET', KEYS[6])
  if existing then return {0, existing} end
end
local rec = cjson.decode(ARGV[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], rec.id)
redis.call('ZADD', KEYS[3], ARGV[2], rec.id)
redis.call('ZADD', KEYS[4], ARGV[2], rec.id)
redis.call('ZADD', KEYS[5], ARGV[2], rec.id)
local oldest = '(' .. tostring(tonumber(ARGV[2]) - tonumber(ARGV[4]) * 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', oldest)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', oldest)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', oldest)
if KEYS[6] ~= '' then redis.call('SET', KEYS[6], rec.id, 'EX', ARGV[5]) end
local ev = event(rec, rec.state, rec.createdAt)
${xaddLua('ARGV[7]', 'ARGV[8]', 'job', 'ev')}
redis.call('PUBLISH', ARGV[6], cjson.encode(ev))
return {1, rec.id}
`

// KEYS: job, deadlines. ARGV: state, at, result json|'', error json|'', retention s, events channel, and the key
// prefixes of the tenant slots (tenant-slots.ts): in-flight, parked, parked job, parked lease; the state the
// job must be in for the change to apply ('' for any earlier one); the event stream and its max length
// (events.ts: the change is appended there in the same step); the kinds the job must be of, space-separated
// ('' for any: a result that only some kinds' jobs have is recorded only on such a job's record); with an end,
// when the job started running ('' when not told): a job not yet running gets its `running` first, with its event;
// the channel of job ends, where an end is published too (waiters listen there: one message per job, not four).
// Returns {status, state, drain, createdAt, kind, serverId}: status 'ok' (changed), 'same' (already there), 'stale'
// (would go backwards or leave a terminal state), 'missing', 'kind' (the job is of another kind, named in the
// place of the state); drain is the slot group whose slot this end freed
// while it has parked jobs; the job's creation, kind and server come with a change (for metrics).
// A terminal state frees the job's slot in the same step, whoever records it, so no writer can forget to.
// (The slot keys are named by the record's tenant, so they are built here rather than passed as KEYS: the
// callers know only the job's id.)
const TRANSITION = `
${LUA_EVENT}
local raw = redis.call('GET', KEYS[1])
if not raw then return {'missing', ''} end
local rank = {queued = 0, dispatched = 1, running = 2, succeeded = 3, failed = 3, timed_out = 3, cancelled = 3}
local job = cjson.decode(raw)
local cur = job.state
local new = ARGV[1]
if rank[cur] == 3 then return {'stale', cur} end
-- ARGV[11], when given: the only state the change may start from (a cancel applies to a queued job only)
if ARGV[11] ~= nil and ARGV[11] ~= '' and cur ~= ARGV[11] then return {'stale', cur} end
if cur == new then return {'same', cur} end
if rank[new] < rank[cur] then return {'stale', cur} end
if ARGV[14] ~= nil and ARGV[14] ~= '' and not string.find(' ' .. ARGV[14] .. ' ', ' ' .. job.kind .. ' ', 1, true) then return {'kind', job.kind} end
-- ARGV[15], when given with an end: the job ran from then; a job not yet running records it first, in this step
if ARGV[15] ~= nil and ARGV[15] ~= '' and rank[new] == 3 and rank[cur] < 2 then
  table.insert(job.history, {state = 'running', at = ARGV[15]})
  local ran = event(job, 'running', ARGV[15])
  ${xaddLua('ARGV[12]', 'ARGV[13]', 'job', 'ran')}
  redis.call('PUBLISH', ARGV[6], cjson.encode(ran))
end
job.state = new
job.updatedAt = ARGV[2]
table.insert(job.history, {state = new, at = ARGV[2]})
if ARGV[3] ~= '' then job.result = cjson.decode(ARGV[3]) end
if ARGV[4] ~= '' then job.error = cjson.decode(ARGV[4]) end
redis.call('SET', KEYS[1], cjson.encode(job), 'EX', ARGV[5])
local ev = event(job, new, ARGV[2])
${xaddLua('ARGV[12]', 'ARGV[13]', 'job', 'ev')}
local drain = ''
if rank[new] == 3 then
  redis.call('ZREM', KEYS[2], job.id)
  ev.record = job
  -- the job's slot group, as TenantSlots.groupOf names it: the tenant and the job's lane (laneOf)
  local group = job.tenantId .. '.' .. (job.kind == 'power' and 'durable' or 'interactive')
  local released = redis.call('ZREM', ARGV[7] .. group, job.id)
  local parked = ARGV[8] .. group
  redis.call('ZREM', parked, job.id)
  redis.call('DEL', ARGV[9] .. job.id, ARGV[10] .. job.id)
  if released == 1 and redis.call('ZCARD', parked) > 0 then drain = group end
end
local msg = cjson.encode(ev)
redis.call('PUBLISH', ARGV[6], msg)
if rank[new] == 3 then redis.call('PUBLISH', ARGV[16], msg) end
return {'ok', new, drain, job.createdAt, job.kind, job.serverId}
`

export type TransitionStatus = 'ok' | 'same' | 'stale' | 'missing' | 'kind'

/**
 * What a transition did; `job` (with a change) says what metrics need to know of the job. With status 'kind'
 * (the job is not of a kind the change allowed), `state` is unchanged and `kind` names the job's kind.
 */
export interface Transition { status: TransitionStatus, state: JobState | '', drain?: string, kind?: JobKind, job?: { createdAt: string, kind: JobKind, serverId: string } }

export interface JobFilter { tenantId?: string, serverId?: string, state?: JobState, kind?: string, limit?: number }

export class JobStore {
  private readonly k: Keys

  constructor (private readonly redis: Redis, ns: string) {
    this.k = keysOf(ns)
    if (!('portholeJobCreate' in redis)) {
      redis.defineCommand('portholeJobCreate', { numberOfKeys: 6, lua: CREATE })
      redis.defineCommand('portholeJobTransition', { numberOfKeys: 2, lua: TRANSITION })
    }
  }

  /** The record a new job starts with. */
  static initialRecord (job: Job): JobRecord {
    const common = {
      id: job.id,
      serverId: job.serverId,
      tenantId: job.tenantId,
      requestedBy: job.requestedBy,
      state: 'queued' as const,
      createdAt: job.createdAt,
      updatedAt: job.createdAt,
      deadline: job.deadline,
      history: [{ state: 'queued' as const, at: job.createdAt }],
      ...(job.retryOf !== undefined ? { retryOf: job.retryOf } : {})
    }
    switch (job.kind) {
      case 'power': return { ...common, kind: job.kind, action: job.action }
      case 'status': return { ...common, kind: job.kind }
      case 'console': return { ...common, kind: job.kind, protocol: job.console.protocol }
    }
  }

  /**
   * Records a new queued job. With an idempotency scope and key, a repeat within `idempotencyTtlSeconds`
   * returns the first job's id instead (`created: false`).
   */
  async create (job: Job, idem?: { scope: string, key: string, ttlSeconds: number }): Promise<{ created: boolean, id: string }> {
    const rec = JobStore.initialRecord(job)
    const r = await (this.redis as unknown as Scripts).portholeJobCreate(
      this.k.job(job.id), this.k.jobDeadlines, this.k.jobsByServer(job.serverId), this.k.jobsByTenant(job.tenantId), this.k.jobsAll,
      idem === undefined ? '' : this.k.idempotency(idem.scope, idem.key),
      JSON.stringify(rec), Date.parse(job.createdAt), Date.parse(job.deadline), JOB_RETENTION_SECONDS, idem?.ttlSeconds ?? 0, this.k.jobEvents,
      this.k.eventStream, EVENT_STREAM_MAX_LENGTH
    )
    return { created: r[0] === 1, id: r[1] }
  }

  /**
   * Moves a job forward (only out of `from` when given, else out of any earlier state; only when the job is
   * of one of `kinds`, when given). An end with `startedAt` records `running` at that time first when the job was
   * not running yet (its event comes first too). A terminal state also frees the job's tenant slot (see TenantSlots); `drain` then
   * names the slot group when it has jobs parked for a slot, for the receiver to hand the next one on.
   */
  async transition (jobId: string, state: JobState, o: { result?: JobResult, error?: JobFailure, at?: Date, from?: JobState, kinds?: readonly JobKind[], startedAt?: Date } = {}): Promise<Transition> {
    const r = await (this.redis as unknown as Scripts).portholeJobTransition(
      this.k.job(jobId), this.k.jobDeadlines,
      state, (o.at ?? new Date()).toISOString(),
      o.result === undefined ? '' : JSON.stringify(o.result),
      o.error === undefined ? '' : JSON.stringify(o.error),
      JOB_RETENTION_SECONDS, this.k.jobEvents,
      this.k.inFlight(''), this.k.parked(''), this.k.parkedJob(''), this.k.parkedLease(''), o.from ?? '',
      this.k.eventStream, EVENT_STREAM_MAX_LENGTH, o.kinds?.join(' ') ?? '', o.startedAt?.toISOString() ?? '', this.k.jobEnds
    )
    if (r[0] === 'kind') return { status: 'kind', state: '', kind: r[1] as JobKind }
    const out: Transition = { status: r[0] as TransitionStatus, state: r[1] as JobState | '' }
    if (typeof r[2] === 'string' && r[2] !== '') out.drain = r[2]
    if (typeof r[3] === 'string' && typeof r[4] === 'string' && typeof r[5] === 'string') out.job = { createdAt: r[3], kind: r[4] as JobKind, serverId: r[5] }
    return out
  }

  async get (id: string): Promise<JobRecord | undefined> {
    const raw = await this.redis.get(this.k.job(id))
    return raw === null ? undefined : fromLua(JSON.parse(raw) as JobRecord)
  }

  async getMany (ids: string[]): Promise<JobRecord[]> {
    if (ids.length === 0) return []
    const raws = await this.redis.mget(ids.map(id => this.k.job(id)))
    return raws.filter((r): r is string => r !== null).map(r => fromLua(JSON.parse(r) as JobRecord))
  }

  /** Newest first; filters by server or tenant through their indexes, by state and kind after reading. */
  async list (f: JobFilter = {}): Promise<JobRecord[]> {
    const limit = f.limit ?? 100
    const index = f.serverId !== undefined ? this.k.jobsByServer(f.serverId) : f.tenantId !== undefined ? this.k.jobsByTenant(f.tenantId) : this.k.jobsAll
    const out: JobRecord[] = []
    const page = Math.max(limit, 100)
    for (let start = 0; out.length < limit && start < 10_000; start += page) {
      const ids = await this.redis.zrevrange(index, start, start + page - 1)
      if (ids.length === 0) break
      for (const j of await this.getMany(ids)) {
        if (f.tenantId !== undefined && j.tenantId !== f.tenantId) continue
        if (f.state !== undefined && j.state !== f.state) continue
        if (f.kind !== undefined && j.kind !== f.kind) continue
        out.push(j)
        if (out.length === limit) break
      }
    }
    return out
  }

  /** Ids of unfinished jobs whose deadline has passed. */
  async overdue (now: number, limit = 100): Promise<string[]> {
    return await this.redis.zrangebyscore(this.k.jobDeadlines, 0, now, 'LIMIT', 0, limit)
  }

  /** Every state change is published here. */
  get eventsChannel (): string { return this.k.jobEvents }
  /** Ends only (each also on `eventsChannel`), with the final record. */
  get endsChannel (): string { return this.k.jobEnds }
}

interface Scripts {
  portholeJobCreate: (...args: Array<string | number>) => Promise<[number, string]>
  portholeJobTransition: (...args: Array<string | number>) => Promise<[string, string, string?, string?, string?, string?]>
}

/** Lua's cjson writes empty arrays as `{}`; the only arrays in a record are never empty, but be exact. */
function fromLua (r: JobRecord): JobRecord {
  if (!Array.isArray(r.history)) r.history = []
  return r
}

/**
 * A message on the job-events channel: the JobEvent, and for a terminal state the job's final record too, so
 * that a waiter has its answer without reading the job again. The record is for the services only (it holds
 * the agents' failure messages); streams to clients send the JobEvent fields alone.
 */
export interface JobEventMessage extends JobEvent { record?: JobRecord }

/** Parses a job event from the channel; undefined for anything else. */
export function parseJobEvent (s: string): JobEventMessage | undefined {
  try {
    const e = JSON.parse(s) as JobEventMessage
    if (typeof e.jobId !== 'string' || typeof e.state !== 'string') return undefined
    if (e.record !== undefined) {
      if (typeof e.record !== 'object' || e.record === null || e.record.id !== e.jobId || e.record.state !== e.state) delete e.record
      else e.record = fromLua(e.record)
    }
    return e
  } catch { return undefined }
}
