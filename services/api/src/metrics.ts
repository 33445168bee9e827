/** Prometheus metrics, one registry per app (so several apps in one test process do not collide). */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { AmqpClient } from '@porthole/shared/amqp'
import { names } from '@porthole/shared/amqp'
import { durationHistogram, observeAmqp, observeRedis, queueGauges, serviceRegistry } from '@porthole/shared/metrics'
import type { ConsoleSessionStore, Redis } from '@porthole/shared/store'

export interface Metrics {
  registry: Registry
  httpDuration: Histogram<'method' | 'route' | 'status_code'>
  jobsCreated: Counter<'kind'>
  limitRefusals: Counter<'limit'>
  jobsRejected: Counter<'kind' | 'reason'>
  webhookAttempts: Histogram<'status'>
  /** Kiosk hand-outs by pool and outcome: hit (a ready clone), miss (none ready: 503), failed (its console could not be made). */
  poolHandouts: Counter<'pool' | 'outcome'>
  poolHandoutSeconds: Histogram<'pool'>
}

export function createMetrics (o: { amqp: AmqpClient, ns: string, sessions: ConsoleSessionStore, redis: Record<string, Redis> }): Metrics {
  const registry = serviceRegistry()
  const httpDuration = new Histogram({
    name: 'porthole_http_request_duration_seconds',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry]
  })
  const jobsCreated = new Counter({ name: 'porthole_jobs_created_total', help: 'jobs created and published, by kind', labelNames: ['kind'] as const, registers: [registry] })
  const limitRefusals = new Counter({ name: 'porthole_limit_refusals_total', help: 'requests refused with 429 by a limit or quota, by limit', labelNames: ['limit'] as const, registers: [registry] })
  const jobsRejected = new Counter({ name: 'porthole_jobs_rejected_total', help: 'jobs that could not be published, by kind and reason', labelNames: ['kind', 'reason'] as const, registers: [registry] })
  queueGauges(registry, o.amqp, names(o.ns).allQueues())
  observeAmqp(registry, o.amqp, 'api')
  for (const [connection, r] of Object.entries(o.redis)) observeRedis(registry, r, connection)
  const webhookAttempts = durationHistogram(registry, 'porthole_webhook_attempt_duration_seconds', 'webhook delivery attempts by the endpoint\'s status (`error`: no answer, a refused connection or the timeout)', ['status'] as const)
  new Gauge({
    name: 'porthole_broker_connected',
    help: '1 while the API holds a connection to RabbitMQ',
    registers: [registry],
    collect () { this.set(o.amqp.connected ? 1 : 0) }
  })
  new Gauge({
    name: 'porthole_console_sessions_live',
    help: 'console sessions neither expired nor revoked',
    registers: [registry],
    async collect () {
      try { this.set((await o.sessions.listLive()).filter(s => s.revokedAt === undefined).length) } catch { /* Redis down: keep the last value */ }
    }
  })
  const poolHandouts = new Counter({ name: 'porthole_pool_handouts_total', help: 'kiosk pool hand-outs by pool and outcome: hit (a ready clone was claimed), miss (none was ready: 503), failed (its console could not be made; the clone is destroyed)', labelNames: ['pool', 'outcome'] as const, registers: [registry] })
  const poolHandoutSeconds = durationHistogram(registry, 'porthole_pool_handout_duration_seconds', 'kiosk hand-outs that succeeded, from the claim to the console URL, by pool', ['pool'] as const)
  return { registry, httpDuration, jobsCreated, jobsRejected, limitRefusals, webhookAttempts, poolHandouts, poolHandoutSeconds }
}
