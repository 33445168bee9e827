/**
 * Requests per API key: @fastify/rate-limit with its Redis store, one count per key shared by every API replica
 * (the truth), and in front of it a local view of the keys that count already refused in this window. Once
 * Redis has answered "over" for a key, the count cannot fall until the window ends (the store never extends or
 * lowers it), so this replica refuses the key's next requests until then without asking again: a client that
 * ignores its 429s and Retry-After costs one in-memory lookup per request, not an authentication and a Redis
 * round trip (issue #8's fair share). A key another replica refused is learnt at its first request here.
 *
 * Cheap refusals alone do not make a flood harmless: a client that retries the moment its 429 arrives sends
 * as many requests as the API can refuse, and the cheaper they are the more it sends (measured: 4× as many,
 * and the other tenants' requests waited longer behind them). So each further refusal of a key already over
 * its limit is held for RATE_LIMIT_REFUSAL_DELAY_MS (never past the window's end; at most MAX_HELD at once per
 * replica, beyond which they are answered at once): a client that honours Retry-After loses nothing, one that
 * ignores it is slowed to one request per delay per connection.
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import type { PortholeError } from '@porthole/contracts/errors'
import { keys, type Redis } from '@porthole/shared/store'
import type { Principal } from './auth.js'
import type { ApiConfig } from './config.js'
import { limitError, requestLimit } from './limits.js'

/** Refusals held at once per replica; beyond, they are answered without the delay. */
const MAX_HELD = 10_000

/** Keys refused by the shared count, each until its window ends. */
export class OverLimit {
  private readonly until = new Map<string, number>()
  private held = 0
  constructor (private readonly holdMs: number, private readonly maxEntries = 10_000) {}

  mark (keyId: string, ttlMs: number, now = Date.now()): void {
    if (this.until.size >= this.maxEntries && !this.until.has(keyId)) this.until.delete(this.until.keys().next().value as string)
    this.until.set(keyId, now + ttlMs)
  }

  /** Milliseconds left of the window in which `keyId` was refused, or undefined when it is not known over. */
  left (keyId: string, now = Date.now()): number | undefined {
    const t = this.until.get(keyId)
    if (t === undefined) return undefined
    if (t > now) return t - now
    this.until.delete(keyId)
    return undefined
  }

  /** Waits `ms` unless MAX_HELD refusals are waiting already. */
  async hold (ms: number): Promise<void> {
    if (ms <= 0 || this.held >= MAX_HELD) return
    this.held++
    try { await new Promise(resolve => setTimeout(resolve, ms)) } finally { this.held-- }
  }

  get delayMs (): number { return this.holdMs }
}

/** The 429 of the request limit, with the headers @fastify/rate-limit sends with its own. */
function refusal (config: ApiConfig, p: Principal | undefined, max: number, ttlMs: number, reply?: FastifyReply): PortholeError {
  const seconds = Math.max(1, Math.ceil(ttlMs / 1000))
  reply?.header('x-ratelimit-limit', max).header('x-ratelimit-remaining', 0).header('x-ratelimit-reset', seconds)
  return limitError('requests_per_key', `this API key made more than ${max} requests in ${config.RATE_LIMIT_WINDOW_SECONDS} s`, { ...requestLimit(config, p), retryAfter: ttlMs / 1000 })
}

/**
 * The 429 for a key this replica already knows is over its limit (`p` authenticated without I/O), after the
 * refusal delay; undefined when it is not known over, or its window ended meanwhile. Sets the limit's headers.
 */
export async function refuseKnownOver (over: OverLimit, config: ApiConfig, p: Principal, reply: FastifyReply): Promise<PortholeError | undefined> {
  const before = over.left(p.id)
  if (before === undefined) return undefined
  await over.hold(Math.min(over.delayMs, before))
  const left = over.left(p.id)
  return left === undefined ? undefined : refusal(config, p, requestLimit(config, p).max, left, reply)
}

/** Registers the shared request limit on `app` (the /v1 scope); what it refuses is marked in `over`. */
export async function registerRequestLimit (app: FastifyInstance, o: { redis: Redis, ns: string, config: ApiConfig, over: OverLimit }): Promise<void> {
  const { config, over } = o
  await app.register(rateLimit, {
    redis: o.redis,
    nameSpace: keys(o.ns).requestRate,
    timeWindow: config.RATE_LIMIT_WINDOW_SECONDS * 1000,
    max: async (req) => requestLimit(config, req.principal).max,
    keyGenerator: (req) => req.principal?.id ?? req.ip,
    errorResponseBuilder: (req, c) => {
      if (req.principal !== undefined) over.mark(req.principal.id, c.ttl)
      return refusal(config, req.principal, c.max, c.ttl)
    }
  })
}
