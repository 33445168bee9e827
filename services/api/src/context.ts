/** What the routes share: configuration, stores, the broker client, the waiter and metrics. */
import type { FastifyRequest } from 'fastify'
import type { AmqpClient } from '@porthole/shared/amqp'
import type { SecretBox } from '@porthole/shared/crypto'
import type { Logger } from '@porthole/shared/logging'
import type { ApiKeyStore, AuditLog, ConsoleSessionStore, ConsoleShareStore, EventReader, JobStore, PoolStore, Redis, ServerStore, TenantStore, WebhookStore } from '@porthole/shared/store'
import type { AuditEntry } from '@porthole/contracts'
import type { ApiConfig } from './config.js'
import type { Authenticator, Principal } from './auth.js'
import type { AuthFailures, EventStreams } from './limits.js'
import type { Metrics } from './metrics.js'
import type { JobWaiter } from './waiter.js'

export interface Ctx {
  config: ApiConfig
  ns: string
  log: Logger
  redis: Redis
  amqp: AmqpClient
  box: SecretBox
  /** Opens the console URLs the gateway hands over (CONSOLE_TRANSIT_KEY). */
  transit: SecretBox
  tenants: TenantStore
  apiKeys: ApiKeyStore
  servers: ServerStore
  jobs: JobStore
  audit: AuditLog
  sessions: ConsoleSessionStore
  shares: ConsoleShareStore
  waiter: JobWaiter
  metrics: Metrics
  auth: Authenticator
  authFailures: AuthFailures
  streams: EventStreams
  /** The event stream's tail and replay (GET /v1/events). */
  events: EventReader
  webhooks: WebhookStore
  /** Kiosk pools and their clones (store/pools.ts). */
  pools: PoolStore
}

/** Appends an audit entry; an audit failure is logged, never turned into a failed request after the fact. */
export async function audit (ctx: Ctx, req: FastifyRequest, p: Principal, e: { action: string, result: string, serverId?: string, jobId?: string, sessionId?: string, tenantId?: string }): Promise<void> {
  const entry: Omit<AuditEntry, 'at'> = { actor: p.id, role: p.role, action: e.action, result: e.result, ip: req.ip }
  const tenantId = e.tenantId ?? p.tenantId
  if (tenantId !== undefined) entry.tenantId = tenantId
  if (e.serverId !== undefined) entry.serverId = e.serverId
  if (e.jobId !== undefined) entry.jobId = e.jobId
  if (e.sessionId !== undefined) entry.sessionId = e.sessionId
  try {
    await ctx.audit.append(entry)
  } catch (err) {
    req.log.error({ err: { message: (err as Error).message }, action: e.action }, 'audit append failed')
  }
}
