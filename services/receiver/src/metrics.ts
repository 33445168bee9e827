/**
 * The receiver's metrics: how long jobs take from creation to their end, by kind, agent type and outcome
 * (observed by the replica that records the end, so each job once), jobs dispatched, jobs not yet ended
 * (read from Redis at scrape time: every replica reports the same number), and queue depths.
 */
import type { AmqpClient } from '@porthole/shared/amqp'
import { names } from '@porthole/shared/amqp'
import type { JobKind, JobState } from '@porthole/contracts'
import { Counter, Gauge, durationHistogram, observeAmqp, observeRedis, queueGauges, serviceRegistry, type Registry } from '@porthole/shared/metrics'
import { keys, type Redis, type ServerStore } from '@porthole/shared/store'

/** Server ids whose agent type is remembered (a server's type rarely changes; a miss costs one read). */
const AGENT_CACHE = 10_000

export class ReceiverMetrics {
  readonly registry: Registry
  private readonly duration: ReturnType<typeof durationHistogram<'kind' | 'agent' | 'outcome'>>
  private readonly dispatchedTotal: Counter<'kind' | 'agent'>
  private readonly agentOf = new Map<string, string>()

  constructor (o: { redis: Redis, amqp: AmqpClient, ns: string, servers: ServerStore }) {
    this.servers = o.servers
    const registry = this.registry = serviceRegistry()
    this.duration = durationHistogram(registry, 'porthole_job_duration_seconds', 'time from a job\'s creation to its end, by kind, agent type and outcome (succeeded, failed, timed_out)', ['kind', 'agent', 'outcome'] as const)
    this.dispatchedTotal = new Counter({ name: 'porthole_jobs_dispatched_total', help: 'jobs handed to an agent type\'s queue', labelNames: ['kind', 'agent'] as const, registers: [registry] })
    const deadlines = keys(o.ns).jobDeadlines
    new Gauge({
      name: 'porthole_jobs_in_flight',
      help: 'jobs created and not yet ended (queued, dispatched or running), across every replica (read from Redis at scrape time)',
      registers: [registry],
      async collect () { try { this.set(await o.redis.zcard(deadlines)) } catch { /* Redis down: keep the last value */ } }
    })
    queueGauges(registry, o.amqp, names(o.ns).allQueues())
    observeAmqp(registry, o.amqp, 'receiver')
    observeRedis(registry, o.redis, 'receiver')
  }

  private readonly servers: ServerStore

  /** A job was dispatched to `agent`'s queue (its type is remembered for the job's end). */
  dispatched (kind: JobKind, serverId: string, agent: string): void {
    this.remember(serverId, agent)
    this.dispatchedTotal.inc({ kind, agent })
  }

  /** A job ended (the transition this replica recorded). */
  async ended (job: { createdAt: string, kind: JobKind, serverId: string }, outcome: JobState, at: Date): Promise<void> {
    let agent = this.agentOf.get(job.serverId)
    if (agent === undefined) {
      agent = (await this.servers.get(job.serverId).catch(() => undefined))?.agent ?? 'unknown'
      this.remember(job.serverId, agent)
    }
    this.duration.observe({ kind: job.kind, agent, outcome }, Math.max(0, at.getTime() - Date.parse(job.createdAt)) / 1000)
  }

  private remember (serverId: string, agent: string): void {
    if (this.agentOf.size >= AGENT_CACHE && !this.agentOf.has(serverId)) this.agentOf.delete(this.agentOf.keys().next().value as string)
    this.agentOf.set(serverId, agent)
  }
}
