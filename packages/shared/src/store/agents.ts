/**
 * Agent heartbeats: each agents process writes where it runs, which agent types it serves and the jobs it
 * is working on, every few seconds (AGENT_HEARTBEAT_SECONDS). The dashboard lists them with their last
 * contact. `agents:{instance}` holds the latest beat and expires after three missed beats; the
 * `agents` sorted set keeps each instance's last contact (score, epoch ms) for a day, so an agent that
 * stopped still shows when it was last heard from.
 */
import type { Redis } from 'ioredis'

/** One agents process, as its last heartbeat described it. */
export interface AgentBeat {
  /** Unique per process: host name, pid and start time. */
  instance: string
  host: string
  pid: number
  types: string[]
  startedAt: string
  at: string
  /** Ids of the jobs the process is acting on now. */
  inFlight: string[]
  /** Jobs it finished since it started. */
  done: number
}

/** A process seen within the last day: its last beat, and whether it is still beating. */
export interface AgentSeen extends AgentBeat { alive: boolean }

const KEEP_MS = 24 * 3600 * 1000

export class AgentRegistry {
  private readonly index: string
  private readonly prefix: string

  constructor (private readonly redis: Redis, ns: string) {
    this.index = `${ns}:agents`
    this.prefix = `${ns}:agents:`
  }

  /** Records a beat; it counts as alive for `ttlSeconds`. */
  async beat (b: AgentBeat, ttlSeconds: number): Promise<void> {
    const now = Date.parse(b.at)
    await this.redis.multi()
      .set(this.prefix + b.instance, JSON.stringify(b), 'EX', ttlSeconds)
      .zadd(this.index, now, b.instance)
      .zremrangebyscore(this.index, '-inf', now - KEEP_MS)
      .exec()
  }

  /** An instance that stops cleanly says so: its entry goes at once (its last contact stays listed). */
  async gone (instance: string): Promise<void> {
    await this.redis.del(this.prefix + instance)
  }

  /** Every instance heard from in the last day, newest contact first. */
  async list (now = Date.now()): Promise<AgentSeen[]> {
    const rows = await this.redis.zrevrangebyscore(this.index, '+inf', now - KEEP_MS, 'WITHSCORES')
    const ids: Array<[string, number]> = []
    for (let i = 0; i + 1 < rows.length; i += 2) ids.push([rows[i] as string, Number(rows[i + 1])])
    if (ids.length === 0) return []
    const beats = await this.redis.mget(ids.map(([id]) => this.prefix + id))
    return ids.map(([instance, at], i) => {
      const raw = beats[i]
      if (raw !== null && raw !== undefined) return { ...(JSON.parse(raw) as AgentBeat), alive: true }
      // Expired (or stopped): only its last contact is known.
      return { instance, host: instance.split('/')[0] ?? instance, pid: 0, types: [], startedAt: '', at: new Date(at).toISOString(), inFlight: [], done: 0, alive: false }
    })
  }
}
