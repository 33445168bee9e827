/**
 * What the receiver's rooms share: its connections and stores, built once by `service.ts`, and the one path
 * by which the receiver records a job's state (`record`), which hands a freed slot on.
 */
import { AmqpClient, names } from '@porthole/shared/amqp'
import { isTerminal, type JobFailure, type JobRecord } from '@porthole/contracts'
import type { Logger } from '@porthole/shared/logging'
import { JobStore, Locks, ServerStore, TenantSlots, createRedis, type Redis } from '@porthole/shared/store'
import type { ReceiverConfig } from './config.js'
import { ReceiverMetrics } from './metrics.js'

/** The failure recorded for a job that nobody finished by its deadline. */
export const DEADLINE_FAILURE: JobFailure = { code: 'timeout', message: 'no answer by the deadline', retryable: true }

export type Transition = Parameters<JobStore['transition']>
export type TransitionResult = ReturnType<JobStore['transition']>

export interface ReceiverParts {
  config: ReceiverConfig
  log: Logger
  n: ReturnType<typeof names>
  redis: Redis
  jobs: JobStore
  servers: ServerStore
  locks: Locks
  slots: TenantSlots
  amqp: AmqpClient
  /** What `/metrics` shows: job durations by outcome, dispatches, jobs in flight, queue depths. */
  metrics: ReceiverMetrics
  /** Records a job's state (see `recorder`). */
  record: (jobId: string, state: Transition[1], o?: Transition[2]) => TransitionResult
  /** Releases the job's per-server power lock when it is a power job (`rec`: its record, when already read). */
  releaseIfPower: (jobId: string, rec?: Pick<JobRecord, 'kind' | 'serverId'>) => Promise<void>
}

/** Builds the receiver's connections and stores; `drain` is the dispatcher's, called when an end frees a slot. */
export function receiverParts (config: ReceiverConfig, log: Logger, drain: (group: string) => Promise<void>): ReceiverParts {
  const ns = config.PORTHOLE_NAMESPACE
  const redis = createRedis(config, log, 'porthole-receiver')
  const jobs = new JobStore(redis, ns)
  const locks = new Locks(redis, ns)
  const servers = new ServerStore(redis, ns)
  const amqp = new AmqpClient({ url: config.RABBITMQ_URL, namespace: ns, log, name: 'porthole-receiver' })
  const metrics = new ReceiverMetrics({ redis, amqp, ns, servers })

  async function releaseIfPower (jobId: string, known?: Pick<JobRecord, 'kind' | 'serverId'>): Promise<void> {
    const rec = known ?? await jobs.get(jobId)
    if (rec?.kind === 'power') await locks.releasePower(rec.serverId, jobId)
  }

  /**
   * Records a job's state; an end that freed a slot of a group with parked jobs hands the slot on, after
   * releasing the job's power lock (the next job may be for the same server).
   */
  async function record (jobId: string, state: Transition[1], o: Transition[2] = {}): TransitionResult {
    const r = await jobs.transition(jobId, state, o)
    if (r.status === 'ok' && r.job !== undefined && isTerminal(state)) await metrics.ended(r.job, state, o.at ?? new Date())
    if (r.drain !== undefined) {
      if (TenantSlots.laneOfGroup(r.drain) === 'durable') await releaseIfPower(jobId)
      await drain(r.drain)
    }
    return r
  }

  return {
    config,
    log,
    n: names(ns),
    redis,
    jobs,
    servers,
    locks,
    slots: new TenantSlots(redis, ns, { interactive: config.TENANT_MAX_IN_FLIGHT, durable: config.TENANT_MAX_POWER_IN_FLIGHT }),
    amqp,
    metrics,
    record,
    releaseIfPower
  }
}

export async function closeRedis (r: Redis): Promise<void> {
  try { await r.quit() } catch { r.disconnect() }
}
