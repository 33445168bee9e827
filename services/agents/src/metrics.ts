/**
 * The agents' metrics: how long each action against a hypervisor, BMC or engine takes (the driver call alone,
 * from the claim to its answer), by agent type, action and outcome (ok or the failure's code), and how many
 * run at once.
 */
import type { AmqpClient } from '@porthole/shared/amqp'
import { Gauge, durationHistogram, observeAmqp, observeRedis, serviceRegistry, type Registry } from '@porthole/shared/metrics'
import type { Redis } from '@porthole/shared/store'

export class AgentMetrics {
  readonly registry: Registry
  private readonly duration: ReturnType<typeof durationHistogram<'agent' | 'action' | 'outcome'>>
  private readonly running: Gauge<'agent'>

  constructor (o: { redis: Redis, amqp: AmqpClient, types: readonly string[] }) {
    const registry = this.registry = serviceRegistry()
    this.duration = durationHistogram(registry, 'porthole_agent_action_duration_seconds', 'actions against the hypervisor, BMC or engine: power actions by name, `status`, `console` (the console target), by agent type and outcome (ok, or the failure code)', ['agent', 'action', 'outcome'] as const)
    this.running = new Gauge({ name: 'porthole_agent_actions_in_flight', help: 'actions under way in this process, by agent type', labelNames: ['agent'] as const, registers: [registry] })
    for (const agent of o.types) this.running.set({ agent }, 0)
    observeAmqp(registry, o.amqp, 'agents')
    observeRedis(registry, o.redis, 'agents')
  }

  /** Starts timing an action; the returned function ends it with its outcome. */
  start (agent: string, action: string): (outcome: string) => void {
    this.running.inc({ agent })
    const end = this.duration.startTimer({ agent, action })
    return (outcome) => { this.running.dec({ agent }); end({ outcome }) }
  }
}
