/**
 * Starts the pool controller where it can run: an agents process that serves kvm and has POOL_OVERLAY_DIR. Its
 * libvirt code is loaded here, on demand, as the kvm driver's is (kvm/load.ts).
 */
import { mkdir } from 'node:fs/promises'
import type { Logger } from '@porthole/shared/logging'
import { ConsoleSessionStore, EventReader, PoolStore, ServerStore, createRedis, keys, runLeased, type Redis } from '@porthole/shared/store'
import type { AgentsConfig } from '../../config.js'
import type { PoolMetrics } from './metrics.js'

export interface RunningPools { stop: () => Promise<void> }

/** Whether this agents process keeps kiosk pools (kvm served, an overlay directory set). */
export function servesPools (config: AgentsConfig): boolean {
  return config.AGENT_TYPES.includes('kvm') && config.POOL_OVERLAY_DIR !== ''
}

export async function startPools (config: AgentsConfig, redis: Redis, metrics: PoolMetrics, log: Logger): Promise<RunningPools> {
  const ns = config.PORTHOLE_NAMESPACE
  await mkdir(config.POOL_OVERLAY_DIR, { recursive: true })
  const [{ CloneHost }, { PoolController }] = await Promise.all([import('./host.js'), import('./controller.js')])
  const pools = new PoolStore(redis, ns)
  // The event stream's blocking reads need a connection of their own, without a command timeout.
  const blocking = createRedis(config, log, 'porthole-agents-pools', { commandTimeoutMs: 0 })
  const host = new CloneHost(config.POOL_LIBVIRT_URI, config.POOL_OVERLAY_DIR, config.QEMU_IMG_PATH)
  const controller = new PoolController({
    host,
    pools,
    servers: new ServerStore(redis, ns),
    sessions: new ConsoleSessionStore(redis, ns),
    events: new EventReader(redis, blocking, ns, log.child({ component: 'pool-events' })),
    // One controller at a time; another agents process takes over within three intervals of its death.
    leased: (work) => runLeased(redis, keys(ns).poolControllerLease, config.POOL_RECONCILE_SECONDS * 1000, work, log, { ttlMs: config.POOL_RECONCILE_SECONDS * 3000 }),
    metrics,
    log: log.child({ component: 'pools' }),
    o: {
      ns,
      hooksDir: config.POOL_HOOKS_DIR,
      hookTimeoutMs: config.POOL_HOOK_TIMEOUT_SECONDS * 1000,
      reconcileMs: config.POOL_RECONCILE_SECONDS * 1000,
      disconnectGraceMs: config.POOL_DISCONNECT_GRACE_SECONDS * 1000,
      claimTimeoutMs: config.POOL_CLAIM_TIMEOUT_SECONDS * 1000,
      refillConcurrency: config.POOL_REFILL_CONCURRENCY,
      stepTimeoutMs: 120_000
    }
  })
  await controller.start()
  return {
    async stop () {
      await controller.stop()
      blocking.disconnect()
      await host.close()
    }
  }
}
