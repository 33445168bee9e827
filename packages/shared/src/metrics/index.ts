/**
 * Prometheus metrics every service shares: a registry per service (so that several in one test process do
 * not collide), the broker's and Redis' health as each connection sees it, queue depths, and a small HTTP
 * listener for the services that have no HTTP server of their own to put `/metrics` on. Names follow
 * Prometheus' conventions under the `porthole_` prefix; deploy/grafana/porthole.json queries exactly these.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client'
import type { Redis } from 'ioredis'
import type { AmqpClient } from '../amqp/index.js'
import type { Logger } from '../logging/index.js'

export { Counter, Gauge, Histogram, Registry } from 'prom-client'

/** Seconds buckets for things that take milliseconds to a minute (jobs, agent actions, console starts). */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

/** A histogram of seconds (DURATION_BUCKETS) on `registry`. */
export function durationHistogram<L extends string> (registry: Registry, name: string, help: string, labelNames: readonly L[]): Histogram<L> {
  return new Histogram({ name, help, labelNames, buckets: DURATION_BUCKETS, registers: [registry] })
}

/**
 * A registry with the process metrics (CPU, memory, event loop lag). Which service a series is from is the
 * scrape's `job` label (deploy/prometheus/prometheus.yml), so no label is added here.
 */
export function serviceRegistry (): Registry {
  const r = new Registry()
  collectDefaultMetrics({ register: r })
  return r
}

/** The metric `name` of `registry`, created by `make` the first time (several connections share one). */
export function metricOf<M extends Metric> (registry: Registry, name: string, make: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? make()
}

/**
 * Counts what an AMQP client goes through: reconnects after a lost connection, and publisher confirms by
 * outcome (`ok`, `error`) with how long each took.
 */
export function observeAmqp (registry: Registry, amqp: AmqpClient, client: string): void {
  const reconnects = metricOf(registry, 'porthole_amqp_reconnects_total', () => new Counter({
    name: 'porthole_amqp_reconnects_total', help: 'connections to RabbitMQ made again after one was lost, by client', labelNames: ['client'] as const, registers: [registry]
  }))
  const confirms = metricOf(registry, 'porthole_amqp_publish_confirms_total', () => new Counter({
    name: 'porthole_amqp_publish_confirms_total', help: 'publishes by the broker\'s answer: ok (confirmed) or error (refused, unroutable, lost or not confirmed in time)', labelNames: ['client', 'outcome'] as const, registers: [registry]
  }))
  const confirmTime = metricOf(registry, 'porthole_amqp_publish_confirm_seconds', () => new Histogram({
    name: 'porthole_amqp_publish_confirm_seconds', help: 'time from a publish to the broker\'s confirm', labelNames: ['client'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5], registers: [registry]
  }))
  const connected = metricOf(registry, 'porthole_amqp_connected', () => new Gauge({
    name: 'porthole_amqp_connected', help: '1 while the client holds a connection to RabbitMQ', labelNames: ['client'] as const, registers: [registry]
  }))
  reconnects.inc({ client }, 0)
  confirms.inc({ client, outcome: 'ok' }, 0)
  confirms.inc({ client, outcome: 'error' }, 0)
  connected.set({ client }, amqp.connected ? 1 : 0)
  let first = !amqp.connected
  amqp.on('connected', () => { if (!first) reconnects.inc({ client }); first = false; connected.set({ client }, 1) })
  amqp.on('disconnected', () => { connected.set({ client }, 0) })
  amqp.on('confirm', (outcome: 'ok' | 'error', seconds: number) => {
    confirms.inc({ client, outcome })
    if (outcome === 'ok') confirmTime.observe({ client }, seconds)
  })
}

/** Counts the errors a Redis connection reports (connection refused, timeouts, resets), by connection. */
export function observeRedis (registry: Registry, redis: Redis, connection: string): void {
  const errors = metricOf(registry, 'porthole_redis_errors_total', () => new Counter({
    name: 'porthole_redis_errors_total', help: 'errors Redis connections reported (each failed reconnect counts), by connection', labelNames: ['connection'] as const, registers: [registry]
  }))
  errors.inc({ connection }, 0)
  redis.on('error', () => { errors.inc({ connection }) })
}

/** Ready messages and consumers of `queues`, read from RabbitMQ at scrape time (one passive declare each). */
export function queueGauges (registry: Registry, amqp: AmqpClient, queues: string[]): void {
  let stats: Promise<Array<{ queue: string, messages: number, consumers: number }>> | undefined
  // Both gauges collect from one queueStats call per scrape.
  const queueStats = async (): Promise<Array<{ queue: string, messages: number, consumers: number }>> => {
    stats ??= amqp.queueStats(queues).catch(() => []).finally(() => { setImmediate(() => { stats = undefined }) })
    return await stats
  }
  new Gauge({
    name: 'porthole_queue_messages',
    help: 'messages ready in each queue (read from RabbitMQ at scrape time)',
    labelNames: ['queue'] as const,
    registers: [registry],
    async collect () { this.reset(); for (const s of await queueStats()) this.set({ queue: s.queue }, s.messages) }
  })
  new Gauge({
    name: 'porthole_queue_consumers',
    help: 'consumers of each queue (read from RabbitMQ at scrape time)',
    labelNames: ['queue'] as const,
    registers: [registry],
    async collect () { this.reset(); for (const s of await queueStats()) this.set({ queue: s.queue }, s.consumers) }
  })
}

export interface MetricsListener { port: number, close: () => Promise<void> }

/**
 * A small HTTP listener for a service without an HTTP server: `GET /metrics` (Prometheus text), `/healthz`
 * (the process answers) and `/readyz` (`ready()`: its connections are up; 503 otherwise).
 */
export async function serveMetrics (o: { host: string, port: number, registry: Registry, ready: () => boolean, log: Logger }): Promise<MetricsListener> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { allow: 'GET, HEAD' }).end(); return }
    if (path === '/metrics') {
      o.registry.metrics().then((text) => { res.writeHead(200, { 'content-type': o.registry.contentType }).end(text) }, (err: unknown) => {
        o.log.warn({ err: { message: (err as Error).message } }, 'metrics collection failed')
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n')
      })
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}')
    } else if (path === '/readyz') {
      const ok = o.ready()
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: ok ? 'ready' : 'not ready' }))
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.port, o.host, () => { server.off('error', reject); resolve() })
  })
  server.unref()
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
