/**
 * The agents process's heartbeat into Redis (AgentRegistry): its types, the jobs it is acting on and how
 * many it finished, every AGENT_HEARTBEAT_SECONDS, for the operators' dashboard. A beat that fails (Redis
 * down) is logged once and tried again at the next tick; it never touches a job.
 */
import { hostname } from 'node:os'
import type { Delivery, Disposition } from '@porthole/shared/amqp'
import type { Logger } from '@porthole/shared/logging'
import { AgentRegistry, type Redis } from '@porthole/shared/store'

export interface Heartbeat {
  /** Wraps a queue handler so that the job it works on counts as in flight until it returns. */
  tracked: (h: (d: Delivery) => Promise<Disposition>) => (d: Delivery) => Promise<Disposition>
  stop: () => Promise<void>
}

export function startHeartbeat (o: { redis: Redis, ns: string, types: string[], intervalSeconds: number, log: Logger }): Heartbeat {
  const registry = new AgentRegistry(o.redis, o.ns)
  const startedAt = new Date().toISOString()
  const host = hostname()
  const instance = `${host}/${process.pid}/${Date.parse(startedAt)}`
  const inFlight = new Set<string>()
  let done = 0
  let failing = false
  const beat = async (): Promise<void> => {
    try {
      await registry.beat({ instance, host, pid: process.pid, types: o.types, startedAt, at: new Date().toISOString(), inFlight: [...inFlight], done }, o.intervalSeconds * 3)
      if (failing) o.log.info('agent heartbeat recorded again')
      failing = false
    } catch (err) {
      if (!failing) o.log.warn({ err: { message: (err as Error).message } }, 'agent heartbeat failed')
      failing = true
    }
  }
  void beat()
  const timer = setInterval(() => { void beat() }, o.intervalSeconds * 1000)
  timer.unref()
  return {
    tracked: h => async (d) => {
      const job = (d.body as { job?: { id?: unknown } } | undefined)?.job
      const id = typeof job?.id === 'string' ? job.id.slice(0, 64) : undefined
      if (id !== undefined) inFlight.add(id)
      try {
        return await h(d)
      } finally {
        if (id !== undefined) { inFlight.delete(id); done++ }
      }
    },
    stop: async () => {
      clearInterval(timer)
      await registry.gone(instance).catch(() => {})
    }
  }
}
