/** Per-server power locks and per-BMC rate gates, shared by every receiver and agent replica. */
import type { Redis } from 'ioredis'
import { keys as keysOf, type Keys } from './redis.js'

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`

export class Locks {
  private readonly k: Keys
  constructor (private readonly redis: Redis, ns: string) {
    this.k = keysOf(ns)
    if (!('portholeRelease' in redis)) redis.defineCommand('portholeRelease', { numberOfKeys: 1, lua: RELEASE })
  }

  /** Takes the server's power lock for `jobId` (re-entrant for the same job); returns the holder's job id. */
  async acquirePower (serverId: string, jobId: string, ttlMs: number): Promise<{ acquired: boolean, holder: string | null }> {
    const key = this.k.powerLock(serverId)
    const ok = await this.redis.set(key, jobId, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX')
    if (ok === 'OK') return { acquired: true, holder: jobId }
    const holder = await this.redis.get(key)
    return { acquired: holder === jobId, holder }
  }

  async releasePower (serverId: string, jobId: string): Promise<void> {
    await (this.redis as unknown as { portholeRelease: (k: string, v: string) => Promise<number> }).portholeRelease(this.k.powerLock(serverId), jobId)
  }

  /**
   * A minimum interval between commands to one target (a BMC): returns 0 when the caller may go now (and
   * books the slot), otherwise the milliseconds to wait.
   */
  async rateGate (scope: string, intervalMs: number): Promise<number> {
    if (intervalMs <= 0) return 0
    const key = this.k.rate(scope)
    const ok = await this.redis.set(key, '1', 'PX', intervalMs, 'NX')
    if (ok === 'OK') return 0
    const ttl = await this.redis.pttl(key)
    return ttl > 0 ? ttl : 1
  }
}
