/** Prometheus metrics, one registry per app (so several apps in one test process do not collide). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { AmqpClient } from '@porthole/shared/amqp'
import { names } from '@porthole/shared/amqp'
import type { ConsoleSessionStore } from '@porthole/shared/store'

export interface Metrics {
  registry: Registry
  httpDuration: Histogram<'method' | 'route' | 'status_code'>
  jobsCreated: Counter<'kind'>
  limitRefusals: Counter<'limit'>
  jobsRejected: Counter<'kind' | 'reason'>
}

export function createMetrics (o: { amqp: AmqpClient, ns: string, sessions: ConsoleSessionStore }): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
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
  const queues = names(o.ns)
  let stats: Promise<Array<{ queue: string, messages: number, consumers: number }>> | undefined
  // Both queue gauges collect from one queueStats call per scrape.
  const queueStats = async (): Promise<Array<{ queue: string, messages: number, consumers: number }>> => {
    stats ??= o.amqp.queueStats(queues.allQueues()).catch(() => []).finally(() => { setImmediate(() => { stats = undefined }) })
    return await stats
  }
  for (const [what, help] of [['messages', 'messages ready in each queue'], ['consumers', 'consumers of each queue']] as const) {
    new Gauge({
      name: `porthole_queue_${what}`,
      help: `${help} (read from RabbitMQ at scrape time)`,
      labelNames: ['queue'] as const,
      registers: [registry],
      async collect () { this.reset(); for (const s of await queueStats()) this.set({ queue: s.queue }, s[what]) }
    })
  }
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
  return { registry, httpDuration, jobsCreated, jobsRejected, limitRefusals }
}
