/** The pool controller's metrics, on the agents' /metrics: refills, failures, disposals, and each pool's clones by state. */
import { Counter, Gauge, durationHistogram, type Registry } from '@porthole/shared/metrics'
import { cloneCounts, type PoolStore } from '@porthole/shared/store'

export class PoolMetrics {
  readonly refill
  readonly failures: Counter<'pool'>
  readonly disposals: Counter<'pool' | 'reason'>

  constructor (registry: Registry, pools: PoolStore) {
    this.refill = durationHistogram(registry, 'porthole_pool_refill_duration_seconds', 'making one kiosk clone, overlay to booted and ready, by pool', ['pool'] as const)
    this.failures = new Counter({ name: 'porthole_pool_clone_failures_total', help: 'kiosk clones that failed to be made (overlay, hook, define or start), by pool', labelNames: ['pool'] as const, registers: [registry] })
    this.disposals = new Counter({ name: 'porthole_pool_disposals_total', help: 'kiosk clones destroyed (domain, definition and overlay), by pool and reason', labelNames: ['pool', 'reason'] as const, registers: [registry] })
    const byState = new Gauge({
      name: 'porthole_pool_clones',
      help: 'kiosk clones by pool and state (ready, starting, in_use), read from Redis at each scrape',
      labelNames: ['pool', 'state'] as const,
      registers: [registry],
      async collect () {
        try {
          this.reset()
          for (const p of await pools.list()) {
            const n = cloneCounts(await pools.clones(p.name))
            this.set({ pool: p.name, state: 'ready' }, n.ready)
            this.set({ pool: p.name, state: 'starting' }, n.starting)
            this.set({ pool: p.name, state: 'in_use' }, n.inUse)
          }
        } catch { /* Redis down: keep the last values */ }
      }
    })
    void byState
    new Gauge({
      name: 'porthole_pool_failing',
      help: '1 for a kiosk pool whose refill stopped after repeated clone failures (or whose template was refused), by pool',
      labelNames: ['pool'] as const,
      registers: [registry],
      async collect () {
        try {
          this.reset()
          for (const p of await pools.list()) this.set({ pool: p.name }, p.state === 'failing' ? 1 : 0)
        } catch { /* keep */ }
      }
    })
  }
}
