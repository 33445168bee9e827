/** Connects the API's dependencies and starts serving; `close()` undoes it all in order. */
import { AmqpClient } from '@porthole/shared/amqp'
import { SecretBox } from '@porthole/shared/crypto'
import { brief, type Logger } from '@porthole/shared/logging'
import { ServerStore, createRedis, keys, runLeased } from '@porthole/shared/store'
import { buildApp, type ApiApp, type AppDeps } from './app.js'
import type { ApiConfig } from './config.js'

export interface RunningApi { app: ApiApp, deps: AppDeps, close: () => Promise<void> }

/** The connections the app needs. The broker connects in the background: the API starts while it is down. */
export function connect (config: ApiConfig, log: Logger, o: { backoff?: { initialMs: number, maxMs: number } } = {}): AppDeps & { close: () => Promise<void>, brokerUp: Promise<void> } {
  const redis = createRedis(config.REDIS_URL, log.child({ component: 'redis' }), 'porthole-api')
  const subscriber = createRedis(config.REDIS_URL, log.child({ component: 'redis-events' }), 'porthole-api-events')
  const blocking = createRedis(config.REDIS_URL, log.child({ component: 'redis-stream' }), 'porthole-api-stream', { commandTimeoutMs: 0 })
  const amqp = new AmqpClient({ url: config.RABBITMQ_URL, namespace: config.PORTHOLE_NAMESPACE, log, name: 'porthole-api', ...(o.backoff === undefined ? {} : { backoff: o.backoff }) })
  const brokerUp = amqp.start(10_000).catch(() => log.warn('message broker not reachable yet; the API answers 503 for jobs until it is'))
  return {
    brokerUp,
    config,
    log,
    redis,
    subscriber,
    blocking,
    amqp,
    async close () {
      // amqplib's close waits for the broker's close-ok forever when the socket died a moment earlier.
      await bounded(amqp.close(), 5000)
      subscriber.disconnect()
      blocking.disconnect()
      await redis.quit().catch(() => redis.disconnect())
    }
  }
}

export async function startApi (config: ApiConfig, log: Logger): Promise<RunningApi> {
  const deps = connect(config, log)
  const app = await buildApp(deps)
  // Serve once the broker is connected (a fast start would otherwise answer its first jobs 503), or after
  // BROKER_WAIT_MS without it: then it serves anyway and answers 503 for jobs until the broker is back.
  await bounded(deps.brokerUp, BROKER_WAIT_MS)
  await app.listen({ host: config.API_HOST, port: config.API_PORT })
  // At start (each replica: it may be the first with a new key); and while old keys are configured (a
  // rotation under way) every ten minutes on the one replica holding the lease, so that records a replica
  // still on the old key writes meanwhile are caught too.
  void resealStale(deps, log)
  const reseal = deps.config.PORTHOLE_OLD_SECRET_KEYS.trim() === ''
    ? undefined
    : runLeased(deps.redis, keys(config.PORTHOLE_NAMESPACE).lease('api.reseal'), RESEAL_EVERY_MS, async () => { await resealStale(deps, log) }, log, { delayFirst: true })
  return {
    app,
    deps,
    async close () {
      await reseal?.stop()
      await app.close()
      await deps.close()
    }
  }
}

const RESEAL_EVERY_MS = 10 * 60_000
/** How long a start waits for the broker before it serves without it. */
const BROKER_WAIT_MS = 5000

/**
 * After a key rotation: server credentials sealed with an old key are re-sealed with the current one in the
 * background, and the log says when none is left (then the old key can go); records in the earlier form are
 * upgraded to boxes bound to their destination. Every replica may run it.
 */
async function resealStale (deps: AppDeps, log: Logger): Promise<void> {
  const l = log.child({ component: 'keys' })
  try {
    const box = SecretBox.fromSettings(deps.config)
    const r = await new ServerStore(deps.redis, deps.config.PORTHOLE_NAMESPACE).resealStale(box, { upgradeLegacy: deps.config.UPGRADE_LEGACY_SECRETS })
    if (r.legacy > 0) l.warn({ records: r.legacy }, 'server records sealed in the earlier form (not bound to their destination) are not used: start one API replica once with UPGRADE_LEGACY_SECRETS=true to upgrade them, or set their passwords again')
    // While old keys are configured (a rotation under way) every pass says where it stands.
    if (r.resealed > 0 || r.upgraded > 0 || r.left > 0 || deps.config.PORTHOLE_OLD_SECRET_KEYS.trim() !== '') l.info({ ...r, keyId: deps.config.PORTHOLE_SECRET_KEY_ID }, r.left === 0 ? 'server credentials re-sealed with the current key; no record needs an old key now' : 'server credentials re-sealed; some do not open: under a key that is not configured, or changed outside the API (their jobs fail auth until their passwords are set again)')
  } catch (err) {
    l.warn({ err: brief(err) }, 'could not re-seal server credentials (tried again at the next start)')
  }
}

async function bounded (p: Promise<void>, ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined
  await Promise.race([p.catch(() => {}), new Promise<void>(resolve => { t = setTimeout(resolve, ms) })])
  clearTimeout(t)
}
