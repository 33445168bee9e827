/** Connects the API's dependencies and starts serving; `close()` undoes it all in order. */
import { AmqpClient } from '@porthole/shared/amqp'
import type { Logger } from '@porthole/shared/logging'
import { createRedis } from '@porthole/shared/store'
import { buildApp, type ApiApp, type AppDeps } from './app.js'
import type { ApiConfig } from './config.js'

export interface RunningApi { app: ApiApp, deps: AppDeps, close: () => Promise<void> }

/** The connections the app needs. The broker connects in the background: the API starts while it is down. */
export function connect (config: ApiConfig, log: Logger, o: { backoff?: { initialMs: number, maxMs: number } } = {}): AppDeps & { close: () => Promise<void> } {
  const redis = createRedis(config.REDIS_URL, log.child({ component: 'redis' }), 'porthole-api')
  const subscriber = createRedis(config.REDIS_URL, log.child({ component: 'redis-events' }), 'porthole-api-events')
  const amqp = new AmqpClient({ url: config.RABBITMQ_URL, namespace: config.PORTHOLE_NAMESPACE, log, name: 'porthole-api', ...(o.backoff === undefined ? {} : { backoff: o.backoff }) })
  amqp.start(10_000).catch(() => log.warn('message broker not reachable yet; the API answers 503 for jobs until it is'))
  return {
    config,
    log,
    redis,
    subscriber,
    amqp,
    async close () {
      // amqplib's close waits for the broker's close-ok forever when the socket died a moment earlier.
      await bounded(amqp.close(), 5000)
      subscriber.disconnect()
      await redis.quit().catch(() => redis.disconnect())
    }
  }
}

export async function startApi (config: ApiConfig, log: Logger): Promise<RunningApi> {
  const deps = connect(config, log)
  const app = await buildApp(deps)
  await app.listen({ host: config.API_HOST, port: config.API_PORT })
  return {
    app,
    deps,
    async close () {
      await app.close()
      await deps.close()
    }
  }
}

async function bounded (p: Promise<void>, ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined
  await Promise.race([p.catch(() => {}), new Promise<void>(resolve => { t = setTimeout(resolve, ms) })])
  clearTimeout(t)
}
