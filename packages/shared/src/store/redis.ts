import { Redis, type RedisOptions as IoRedisOptions } from 'ioredis'
import type { Logger } from '../logging/index.js'

export type { Redis } from 'ioredis'

export interface RedisOptions {
  /**
   * A command without an answer after this many milliseconds fails with "Command timed out" (default 5000);
   * 0 turns the limit off (only for connections that run blocking commands).
   */
  commandTimeoutMs?: number
}

/** Where Redis is: the services' configuration (commonSettings), or a URL alone (tools and tests). */
export interface RedisSettings {
  REDIS_URL: string
  /** When not empty, the Sentinels asked for the primary of REDIS_SENTINEL_NAME. */
  REDIS_SENTINELS: ReadonlyArray<{ host: string, port: number }>
  REDIS_SENTINEL_NAME: string
}

/**
 * ioredis's connection options for `where`: REDIS_URL's user, password, database and TLS either way; its
 * host and port, or the primary the Sentinels name (followed across failovers).
 */
export function redisTarget (where: RedisSettings | string): IoRedisOptions {
  const s: RedisSettings = typeof where === 'string' ? { REDIS_URL: where, REDIS_SENTINELS: [], REDIS_SENTINEL_NAME: '' } : where
  const u = new URL(s.REDIS_URL)
  const db = Number(u.pathname.replace(/^\//, '') || '0')
  const auth = {
    ...(u.username === '' ? {} : { username: decodeURIComponent(u.username) }),
    ...(u.password === '' ? {} : { password: decodeURIComponent(u.password) }),
    db: Number.isFinite(db) ? db : 0,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {})
  }
  if (s.REDIS_SENTINELS.length === 0) return { ...auth, host: u.hostname, port: Number(u.port === '' ? 6379 : u.port) }
  return {
    ...auth,
    sentinels: s.REDIS_SENTINELS.map(x => ({ host: x.host, port: x.port })),
    name: s.REDIS_SENTINEL_NAME,
    role: 'master',
    // The Sentinels tell of a failover at once (+switch-master): the connection moves then, not at its next error.
    failoverDetector: true,
    sentinelRetryStrategy: (times: number) => Math.min(50 * 2 ** times, 2000),
    ...(u.protocol === 'rediss:' ? { enableTLSForSentinelMode: true } : {})
  }
}

/**
 * A Redis connection that fails commands quickly while Redis is down (the API answers 503, consumers
 * requeue) instead of queueing them without bound, fails a command Redis does not answer within
 * `commandTimeoutMs` (a Redis that hangs) instead of waiting forever, and reconnects by itself. Subscriber
 * connections are fine with the limit: it bounds only the SUBSCRIBE itself, never the wait for messages.
 * One code path for a single Redis and for Redis behind Sentinel (`where`: redisTarget).
 */
export function createRedis (where: RedisSettings | string, log: Logger, name: string, o: RedisOptions = {}): Redis {
  const commandTimeout = o.commandTimeoutMs ?? 5000
  const r = new Redis({
    ...redisTarget(where),
    connectionName: name,
    ...(commandTimeout > 0 ? { commandTimeout } : {}),
    maxRetriesPerRequest: 2,
    connectTimeout: 3000,
    enableAutoPipelining: true,
    retryStrategy: (times: number) => Math.min(50 * 2 ** times, 2000),
    // A primary demoted by a failover answers writes READONLY: reconnect (to the new primary) and send again.
    reconnectOnError: (err: Error) => err.message.startsWith('READONLY') ? 2 : false,
    lazyConnect: false
  })
  let down = false
  r.on('error', (err: Error) => { if (!down) log.warn({ err: { message: err.message } }, 'redis error'); down = true })
  r.on('ready', () => { if (down) log.info('redis reconnected'); down = false })
  return r
}

/** Every Redis key Porthole uses, under one namespace. */
export function keys (ns: string) {
  const p = `${ns}:`
  return {
    job: (id: string) => `${p}job:${id}`,
    jobsAll: `${p}jobs`,
    jobsByServer: (id: string) => `${p}jobs:server:${id}`,
    jobsByTenant: (id: string) => `${p}jobs:tenant:${id}`,
    jobDeadlines: `${p}jobs:deadlines`,
    /** A tenant's dispatched, unfinished jobs of one lane (its slots), by deadline; `group` is `{tenantId}.{lane}`. */
    inFlight: (group: string) => `${p}inflight:${group}`,
    /** A tenant's jobs of one lane waiting for a slot, by deadline (earliest first). */
    parked: (group: string) => `${p}parked:${group}`,
    parkedJob: (jobId: string) => `${p}parked-job:${jobId}`,
    parkedLease: (jobId: string) => `${p}parked-lease:${jobId}`,
    parkedGroups: `${p}parked-groups`,
    idempotency: (scope: string, key: string) => `${p}idem:${scope}:${key}`,
    /** Every job state change (JobEventMessage); subscribed to only while someone follows them all (the ops feed). */
    jobEvents: `${p}events:jobs`,
    /** Job ends only (each with its final record): what every API replica's waiters listen to. */
    jobEnds: `${p}events:jobs:ends`,
    /** The one event stream (job state changes, console session events) behind /v1/events and webhooks. */
    eventStream: `${p}events:stream`,
    /** Console sessions by expiry, until the expiry sweep has told of each (ConsoleSessionStore.sweepExpired). */
    sessionsExpiring: `${p}console:expiring`,
    webhook: (id: string) => `${p}webhook:${id}`,
    webhooksByTenant: (id: string) => `${p}webhooks:tenant:${id}`,
    webhooks: `${p}webhooks`,
    webhookDelivery: (id: string) => `${p}webhook:delivery:${id}`,
    /** A webhook's deliveries by creation time (the newest kept). */
    webhookDeliveries: (webhookId: string) => `${p}webhook:deliveries:${webhookId}`,
    /** A webhook's pending deliveries (so that they can be held back together while its endpoint is busy). */
    webhookPending: (webhookId: string) => `${p}webhook:pending:${webhookId}`,
    /** Pending deliveries by when their next attempt is due (or their lease ends). */
    webhookDue: `${p}webhook:due`,
    server: (id: string) => `${p}server:${id}`,
    servers: `${p}servers`,
    serversByTenant: (id: string) => `${p}servers:tenant:${id}`,
    tenant: (id: string) => `${p}tenant:${id}`,
    tenants: `${p}tenants`,
    apiKey: (hash: string) => `${p}apikey:${hash}`,
    apiKeyById: (id: string) => `${p}apikey-id:${id}`,
    apiKeys: `${p}apikeys`,
    powerLock: (serverId: string) => `${p}lock:power:${serverId}`,
    rate: (scope: string) => `${p}rate:${scope}`,
    session: (id: string) => `${p}console:session:${id}`,
    sessionByToken: (hash: string) => `${p}console:token:${hash}`,
    sessions: `${p}console:sessions`,
    sessionViewer: (id: string) => `${p}console:viewer:${id}`,
    /** A single-use session's viewer left: its own viewer may come back while this lives (the resume grace). */
    sessionViewerLeft: (id: string) => `${p}console:viewer-left:${id}`,
    /** A session's shares (a second URL for the same screen), by id and by token hash, and who watches through them now. */
    consoleShare: (id: string) => `${p}console:share:${id}`,
    consoleShareByToken: (hash: string) => `${p}console:share-token:${hash}`,
    consoleWatchers: (sessionId: string) => `${p}console:watchers:${sessionId}`,
    /** A server's (a tenant's) console slots: live sessions and console jobs under way, scored by when each frees. */
    consoleSlotsOfServer: (id: string) => `${p}console:slots:server:${id}`,
    consoleSlotsOfTenant: (id: string) => `${p}console:slots:tenant:${id}`,
    sessionEvents: `${p}events:console`,
    /** A console job's URL hand-over: its URL, sealed, from the gateway that minted it to the API that delivers it (once). */
    consoleUrlHandover: (jobId: string) => `${p}console:url-handover:${jobId}`,
    /** A lease on a piece of periodic work that one replica runs at a time (runLeased). */
    lease: (name: string) => `${p}lease:${name}`,
    agentClaim: (jobId: string) => `${p}agent:claim:${jobId}`,
    agentOutcome: (jobId: string) => `${p}agent:outcome:${jobId}`,
    solTicket: (tokenHash: string) => `${p}sol:ticket:${tokenHash}`,
    /** One audit stream per tenant, one for actions without a tenant, and the index of streams by last write. */
    auditTenant: (tenantId: string) => `${p}audit:tenant:${tenantId}`,
    auditSystem: `${p}audit:system`,
    auditStreams: `${p}audit:streams`,
    /** Failed authentications from one client address, per window. */
    authFailures: (ip: string) => `${p}authfail:${ip}`,
    /** Open event streams of an API key (a sorted set of stream ids by lease expiry). */
    eventStreams: (apiKeyId: string) => `${p}sse:key:${apiKeyId}`,
    /** Suspended tenants, API keys revoked: for every API replica's open event streams. */
    accessEvents: `${p}events:access`,
    /** Kiosk pools (store/pools.ts): each pool's spec and state, its clones, ready list, failures and name serial. */
    pool: (name: string) => `${p}pool:${name}`,
    pools: `${p}pools`,
    poolIds: `${p}pools:ids`,
    poolClones: (name: string) => `${p}pool:${name}:clones`,
    poolReady: (name: string) => `${p}pool:${name}:ready`,
    poolFailures: (name: string) => `${p}pool:${name}:failures`,
    poolSerial: (name: string) => `${p}pool:${name}:serial`,
    /** Server id → `<pool>/<clone>` for every clone's server record. */
    poolServers: `${p}pools:servers`,
    /** The pool controller's lease: one agents process keeps the pools at a time. */
    poolControllerLease: `${p}pools:controller`,
    /** Prefix of @fastify/rate-limit's counters (one per API key). */
    requestRate: `${p}ratelimit:`
  }
}
export type Keys = ReturnType<typeof keys>
