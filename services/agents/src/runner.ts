/**
 * The job runner: one process serving several agent types. For each configured type it consumes
 * `<ns>.agent.<type>`, runs the job with that type's driver under an AbortSignal that fires at the job's
 * deadline, and reports progress and outcome as JobUpdates to `<ns>.results`. Console jobs end here with a
 * ConsoleMintRequest to the gateway, which publishes the final update once it has made the session.
 */
import { AmqpClient, deadLetterPoison, names, ttlUntil, type Delivery, type Disposition } from '@porthole/shared/amqp'
import { ConfigError } from '@porthole/shared/config'
import {
  AgentRequest, Job as JobSchema, compile, connectionProblem, type AgentType, type ConsoleMintRequest, type Job, type JobFailure, type JobKind, type JobUpdate, type PowerStatus, type ServerSecrets
} from '@porthole/contracts'
import { SecretBox, openServerSecrets } from '@porthole/shared/crypto'
import { PortholeError, TimeoutError, ValidationError, toFailure } from '@porthole/contracts/errors'
import { brief, type Logger } from '@porthole/shared/logging'
import { Locks, PoolStore, createRedis, keys } from '@porthole/shared/store'
import { serveMetrics, type MetricsListener } from '@porthole/shared/metrics'
import { startHeartbeat, type Heartbeat } from './heartbeat.js'
import type { AgentsConfig } from './config.js'
import type { AgentDriver } from './driver.js'
import { DRIVERS, type DriverFactory } from './registry.js'
import { SolTickets } from './ipmi/sol-tickets.js'
import { startSolBridge, type SolBridge } from './ipmi/sol.js'
import { AgentMetrics } from './metrics.js'
import { servesPools, startPools, type RunningPools } from './kvm/pools/index.js'
import { PoolMetrics } from './kvm/pools/metrics.js'

const checkRequest = compile(AgentRequest, 'agent request')
const checkJob = compile(JobSchema, 'job')

/**
 * When a request fails its schema only because its server's connection (or console endpoint) is not its agent's,
 * the job and server it names and why; undefined for a request that is poison.
 */
function badConnection (body: unknown): { job: Job, serverId: string, agent: AgentType, why: string } | undefined {
  const field = (() => { try { checkRequest.parse(body) } catch (err) { return (err as ValidationError).details?.field } })()
  if (typeof field !== 'string' || !/^server\.(connection|console)(\.|$)/.test(field)) return undefined
  const { job, server } = body as { job: unknown, server: { id: string, agent: AgentType, connection: unknown } }
  if (!checkJob.check(job)) return undefined
  const why = field.startsWith('server.connection') ? connectionProblem(server.agent, server.connection) : undefined
  return { job, serverId: server.id, agent: server.agent, why: why ?? checkRequest.explain(body) }
}

/**
 * What running a job produced: a power state, a console target for the gateway, or a failure; `startedAt` for a
 * job that reports its start with its end (status and console jobs, see `JobUpdate.startedAt`).
 */
type Outcome = ({ jobId: string, result: PowerStatus } | { mint: ConsoleMintRequest } | { jobId: string, error: JobFailure }) & { startedAt?: string }

export interface AgentsDeps {
  config: AgentsConfig
  log: Logger
  /** The driver registry (default: `DRIVERS`). */
  drivers?: { [A in AgentType]?: DriverFactory<A> }
}

/** The running agents: `close` lets running actions finish and report, then closes every connection. */
export interface AgentRunner {
  /** The port of the metrics listener. */
  metricsPort: number
  close: () => Promise<void>
}

export async function startAgents ({ config, log, drivers = DRIVERS }: AgentsDeps): Promise<AgentRunner> {
  const ns = config.PORTHOLE_NAMESPACE
  const n = names(ns)
  const box = SecretBox.fromSettings(config)
  // Console targets go to the gateway under the transit key: the gateway never holds PORTHOLE_SECRET_KEY.
  const transit = SecretBox.forConsoleTransit(config)
  for (const type of config.AGENT_TYPES) {
    if (drivers[type] === undefined) throw new ConfigError('AGENT_TYPES', `no driver for agent type ${type} in this build`)
  }
  const redis = createRedis(config, log, 'porthole-agents')
  const locks = new Locks(redis, ns)
  const k = keys(ns)
  // The serial-over-LAN bridge runs where the ipmi type is served; its port is known once it listens.
  const tickets = config.AGENT_TYPES.includes('ipmi') ? new SolTickets(redis, box, ns) : undefined
  let bridge: SolBridge | undefined
  const sol = tickets === undefined ? undefined : { tickets, port: () => bridge?.port ?? config.SOL_BRIDGE_PORT }
  const active: AgentDriver[] = []
  let beats: Heartbeat | undefined
  try {
    for (const type of config.AGENT_TYPES) active.push(await (drivers[type] as DriverFactory)({ config, log: log.child({ component: type }), locks, sol }))
  } catch (err) { // e.g. kvm without its libvirt binding: a ConfigError, exit code 2
    await Promise.allSettled(active.map(async d => await d.close()))
    redis.disconnect()
    throw err
  }
  const amqp = new AmqpClient({ url: config.RABBITMQ_URL, namespace: ns, log, name: `porthole-agents(${config.AGENT_TYPES.join(',')})` })
  const metrics = new AgentMetrics({ redis, amqp, types: config.AGENT_TYPES })
  // Wherever kvm is served, so that a dashboard finds the pool metrics whichever agents process keeps the pools.
  const poolMetrics = config.AGENT_TYPES.includes('kvm') ? new PoolMetrics(metrics.registry, new PoolStore(redis, ns)) : undefined

  /** Publishes a job's update in its job's lane (a poison request's, whose kind is unknown, in the durable one). */
  async function update (u: JobUpdate, kind: JobKind = 'power'): Promise<void> {
    await amqp.publish(n.resultsExchange, n.resultsKeyOf(kind), u)
  }

  function handler (driver: AgentDriver): (d: Delivery) => Promise<Disposition> {
    const typeLog = log.child({ component: driver.type })
    return async (d) => {
      if (!checkRequest.check(d.body)) {
        // A good job for a server record whose connection is not its agent's: the job fails as invalid.
        const bad = badConnection(d.body)
        if (bad !== undefined) {
          const error = toFailure(new ValidationError(`server ${bad.serverId} has no valid ${bad.agent} connection: ${bad.why}`))
          typeLog.info({ jobId: bad.job.id, serverId: bad.serverId, reason: error.message }, 'job failed: its server record has no valid connection')
          try { await update({ jobId: bad.job.id, state: 'failed', at: new Date().toISOString(), error }, bad.job.kind) } catch { return 'requeue' }
          return 'ack'
        }
        // A request that can never be processed: its job (when it names one) fails now, in the durable lane
        // (its kind is unknown), and the request is dead-lettered.
        return await deadLetterPoison(d.body, checkRequest, {
          fail: async (jobId, error) => await update({ jobId, state: 'failed', at: new Date().toISOString(), error }),
          log: typeLog,
          what: 'agent request'
        })
      }
      const { job, server } = d.body
      const l = typeLog.child({ jobId: job.id, serverId: server.id, traceId: job.traceId, kind: job.kind, action: job.kind === 'power' ? job.action : undefined })
      const deadline = new Date(job.deadline)
      if (deadline.getTime() <= Date.now()) {
        l.info('job arrived after its deadline; skipping (the receiver times it out)')
        return 'ack'
      }
      // At most once: a redelivered request (the broker lost our ack, or we requeued after failing to report)
      // must not reset or reboot a server a second time, nor make a second console session. The first delivery
      // claims the job; a later one only re-sends the outcome the first recorded, or leaves the job to its
      // deadline if there is none yet. A status job changes nothing: run again, it only reads the state
      // again, so it skips the claim and the record (two Redis round trips on the busiest kind of job).
      const once = job.kind !== 'status'
      const claimKey = k.agentClaim(job.id)
      const outcomeKey = k.agentOutcome(job.id)
      const keepMs = Math.max(1000, deadline.getTime() - Date.now()) + 600_000
      try {
        if (once && await redis.set(claimKey, String(process.pid), 'PX', keepMs, 'NX') !== 'OK') {
          const stored = await redis.get(outcomeKey)
          if (stored === null) {
            l.warn('job redelivered while claimed (running elsewhere, or an agent died mid-action); not repeating it')
            return 'ack'
          }
          l.info('job redelivered after it ran; sending its recorded outcome again')
          return await report(JSON.parse(stored) as Outcome, job, l, 0)
        }
      } catch (err) {
        l.warn({ err: brief(err) }, 'could not claim the job; requeueing')
        return 'requeue'
      }
      // A power job's "running" goes out now and is never waited for: its confirm (a disk sync) would sit on
      // every job's critical path. The result is published later on the same channel, so the broker has routed
      // "running" before it; a lost "running" only leaves a gap in the job's history. A status or console job
      // lasts milliseconds: its start goes with its end (`startedAt`), one message fewer on the busiest path.
      const startedAt = new Date().toISOString()
      const running = job.kind !== 'power'
        ? undefined
        : update({ jobId: job.id, state: 'running', at: startedAt }, job.kind).catch((err: unknown) => l.warn({ err: brief(err) }, 'could not report running'))

      // Fires at the deadline: drivers bound every call by it.
      const ac = new AbortController()
      const timer = setTimeout(() => ac.abort(new TimeoutError('no answer by the deadline')), Math.max(0, deadline.getTime() - Date.now()))
      const started = Date.now()
      const timed = metrics.start(driver.type, job.kind === 'power' ? job.action : job.kind)
      let outcome: Outcome
      try {
        // Each password opens only for the destination it was sealed for: a record or message edited on the
        // way cannot send it elsewhere. Nothing has been sent to anyone when this throws.
        const secrets: ServerSecrets = openServerSecrets(box, server)
        if (server.agent !== driver.type) throw new ValidationError(`server ${server.id} is a ${server.agent} server, not ${driver.type}`)
        const ctx = { server, secrets, signal: ac.signal, deadline, log: l }
        switch (job.kind) {
          case 'power':
            outcome = { jobId: job.id, result: await driver.power({ ...ctx, job }, job.action) }
            break
          case 'status':
            outcome = { jobId: job.id, result: await driver.status({ ...ctx, job }) }
            break
          case 'console': {
            const target = await driver.consoleTarget({ ...ctx, job }, job.console.protocol)
            outcome = { mint: { job, server: { id: server.id, tenantId: server.tenantId, name: server.name }, target: transit.seal(target, job.id), startedAt } }
          }
        }
      } catch (err) {
        outcome = { jobId: job.id, error: toFailure(err) }
        if (!(err instanceof PortholeError)) l.error({ err: brief(err) }, 'unexpected driver error')
      } finally {
        clearTimeout(timer)
      }
      timed('error' in outcome ? outcome.error.code : 'ok')
      if (running === undefined && !('mint' in outcome)) outcome.startedAt = startedAt

      if (once) await redis.set(outcomeKey, JSON.stringify(outcome), 'PX', keepMs).catch((err: unknown) => l.warn({ err: brief(err) }, 'could not record the outcome'))
      void running
      return await report(outcome, job, l, Date.now() - started)
    }
  }

  /** Sends a job's outcome: the console target to the gateway, or the result to the receiver. */
  async function report (outcome: Outcome, job: Job, l: Logger, ms: number): Promise<Disposition> {
    const jobId = 'mint' in outcome ? outcome.mint.job.id : outcome.jobId
    try {
      if ('mint' in outcome) {
        await amqp.publish(n.consoleExchange, n.mintKey, outcome.mint, { expiration: ttlUntil(job.deadline) })
        l.info({ ms }, 'console target sent to the gateway')
      } else if ('result' in outcome) {
        await update({ jobId, state: 'succeeded', at: new Date().toISOString(), result: outcome.result, ...startOf(outcome) }, job.kind)
        l.info({ ms, power: outcome.result.power, changed: outcome.result.changed }, 'job succeeded')
      } else {
        await update({ jobId, state: 'failed', at: new Date().toISOString(), error: outcome.error, ...startOf(outcome) }, job.kind)
        l.info({ ms, code: outcome.error.code, reason: outcome.error.message }, 'job failed')
      }
    } catch (err) {
      // The broker went away: the delivery returns to the queue with the connection, or is requeued here.
      l.warn({ err: brief(err) }, 'could not report the outcome; requeueing')
      return 'requeue'
    }
    return 'ack'
  }

  const startOf = (o: Outcome): { startedAt?: string } => o.startedAt === undefined ? {} : { startedAt: o.startedAt }

  let listener: MetricsListener | undefined
  let pools: RunningPools | undefined
  try {
    if (tickets !== undefined) {
      // readConfig made sure the secret is set where ipmi is served.
      bridge = await startSolBridge({ host: config.SOL_BRIDGE_HOST, port: config.SOL_BRIDGE_PORT, tickets, secret: Buffer.from(config.SOL_BRIDGE_SECRET ?? '', 'base64'), ipmitool: config.IPMITOOL_PATH, searchPath: config.PATH, log })
    }
    listener = await serveMetrics({ host: config.METRICS_HOST, port: config.AGENTS_METRICS_PORT, registry: metrics.registry, ready: () => amqp.connected && redis.status === 'ready', log })
    await amqp.start()
    if (servesPools(config) && poolMetrics !== undefined) pools = await startPools(config, redis, poolMetrics, log)
    beats = startHeartbeat({ redis, ns, types: [...config.AGENT_TYPES], intervalSeconds: config.AGENT_HEARTBEAT_SECONDS, log: log.child({ component: 'heartbeat' }) })
    for (const driver of active) {
      // Both lanes: power jobs on the quorum queue, status and console jobs on the classic one (topology.ts).
      await amqp.consume(n.agentQueue(driver.type), beats.tracked(handler(driver)), { prefetch: config.AGENT_PREFETCH })
      await amqp.consume(n.agentInteractiveQueue(driver.type), beats.tracked(handler(driver)), { prefetch: config.AGENT_PREFETCH })
    }
  } catch (err) {
    await pools?.stop().catch(() => {})
    await beats?.stop()
    await amqp.close().catch(() => {})
    await listener?.close().catch(() => {})
    await bridge?.close().catch(() => {})
    await Promise.allSettled(active.map(async d => await d.close()))
    redis.disconnect()
    throw err
  }

  return {
    metricsPort: listener.port,
    async close () {
      await listener?.close().catch(() => {})
      await pools?.stop().catch(() => {})
      // Running actions finish and report first: an action cut off here is never repeated by a redelivery
      // (the claim), so its job could only time out.
      await amqp.close(config.AGENT_STOP_GRACE_SECONDS * 1000)
      await beats?.stop()
      await bridge?.close().catch(() => {})
      await Promise.allSettled(active.map(async d => await d.close()))
      await redis.quit().catch(() => redis.disconnect())
    }
  }
}
