/**
 * Porthole's RabbitMQ topology, declared in this one place by every service at every (re)connect.
 *
 * Two lanes. **Durable** (power jobs): quorum queues with a delivery limit and a dead-letter exchange, so
 * a power action survives the loss of a broker node and a message that keeps crashing its consumer ends
 * in `<ns>.dead` instead of looping. **Interactive** (status and console jobs, which somebody is waiting
 * for): durable classic queues with persistent messages, which survive a broker restart but are not
 * replicated; a quorum queue's Raft round costs each hop ~0.8 ms before delivery against ~0.3 ms here,
 * and such a job is worth nothing after its deadline anyway. Interactive messages therefore carry a
 * per-message TTL up to their job's deadline and are dead-lettered when it passes (the deadline sweeper
 * then times the job out), which also bounds a requeue loop, as the delivery limit does on quorum queues.
 *
 * On a cluster (RABBITMQ_URL lists several nodes: `replicated`) every queue is a quorum queue of three
 * members (`x-quorum-initial-group-size`), the interactive lane's too: a classic queue lives on one node,
 * and while that node is down the queue can neither be used nor declared again from another node, so
 * status and console jobs would stop with it. All services must therefore name the same nodes (they read the
 * same RABBITMQ_URL); a queue cannot change its type, so a single-node deployment moving to a cluster starts
 * with a new namespace or deletes its interactive queues once (docs/runbook.md).
 */
import type { AgentType, JobKind } from '@porthole/contracts'

export type Lane = 'durable' | 'interactive'

/** The lane a job kind travels in: power actions must not be lost; reads and consoles must be quick. */
export function laneOf (kind: JobKind): Lane {
  return kind === 'power' ? 'durable' : 'interactive'
}

export interface Names {
  jobsExchange: string
  /** The durable lane's queue and key (power jobs). */
  receiverQueue: string
  receiverKey: string
  /** The interactive lane's queue and key (status and console jobs). */
  receiverInteractiveQueue: string
  receiverInteractiveKey: string
  /** Where the API publishes a job of this kind. */
  receiverKeyOf: (kind: JobKind) => string
  agentsExchange: string
  agentQueue: (t: AgentType) => string
  agentInteractiveQueue: (t: AgentType) => string
  /** Where the receiver publishes a job of this kind for this agent type. */
  agentKeyOf: (t: AgentType, kind: JobKind) => string
  consoleExchange: string
  /** Console mint requests (interactive only). */
  mintQueue: string
  mintKey: string
  resultsExchange: string
  resultsQueue: string
  resultsKey: string
  resultsInteractiveQueue: string
  resultsInteractiveKey: string
  /** Where an agent or the gateway publishes an update of a job of this kind. */
  resultsKeyOf: (kind: JobKind) => string
  delayQueue: string
  deadExchange: string
  deadQueue: string
  /**
   * The interactive lane's dead letters (mostly requests that expired while nobody consumed them): a bounded
   * queue of their own, so that an agent type that is down while portals poll cannot fill `deadQueue`.
   */
  deadInteractiveExchange: string
  deadInteractiveQueue: string
  /** A second copy of every dead letter, for the receiver: it ends the jobs of messages RabbitMQ gave up on. */
  deadWatchQueue: string
  /** Every queue, for metrics and clean-up. */
  allQueues: () => string[]
}

export const AGENT_QUEUE_TYPES: readonly AgentType[] = ['kvm', 'ipmi', 'ovirt']

export function names (ns: string): Names {
  const n: Names = {
    jobsExchange: `${ns}.jobs`,
    receiverQueue: `${ns}.jobs.receiver`,
    receiverKey: 'receiver',
    receiverInteractiveQueue: `${ns}.jobs.receiver.interactive`,
    receiverInteractiveKey: 'receiver.interactive',
    receiverKeyOf: kind => laneOf(kind) === 'durable' ? n.receiverKey : n.receiverInteractiveKey,
    agentsExchange: `${ns}.agents`,
    agentQueue: t => `${ns}.agent.${t}`,
    agentInteractiveQueue: t => `${ns}.agent.${t}.interactive`,
    agentKeyOf: (t, kind) => laneOf(kind) === 'durable' ? t : `${t}.interactive`,
    consoleExchange: `${ns}.console`,
    // Not `${ns}.console.mint`: that name was a quorum queue before the lanes, and a queue cannot change type.
    mintQueue: `${ns}.console.mint.interactive`,
    // Not `mint`: the quorum queue of earlier versions is bound with that key and would get a copy of each.
    mintKey: 'mint.interactive',
    resultsExchange: `${ns}.results`,
    resultsQueue: `${ns}.results`,
    resultsKey: 'update',
    resultsInteractiveQueue: `${ns}.results.interactive`,
    resultsInteractiveKey: 'update.interactive',
    resultsKeyOf: kind => laneOf(kind) === 'durable' ? n.resultsKey : n.resultsInteractiveKey,
    delayQueue: `${ns}.jobs.delay`,
    deadExchange: `${ns}.dlx`,
    deadQueue: `${ns}.dead`,
    deadInteractiveExchange: `${ns}.dlx.interactive`,
    deadInteractiveQueue: `${ns}.dead.interactive`,
    deadWatchQueue: `${ns}.dead.watch`,
    allQueues: () => [
      n.receiverQueue, n.receiverInteractiveQueue,
      ...AGENT_QUEUE_TYPES.flatMap(t => [n.agentQueue(t), n.agentInteractiveQueue(t)]),
      n.mintQueue, n.resultsQueue, n.resultsInteractiveQueue, n.delayQueue, n.deadQueue, n.deadInteractiveQueue, n.deadWatchQueue
    ]
  }
  return n
}

/** How long a job waits in the delay queue before the receiver sees it again (a server busy with another power job). */
export const DELAY_MS = 200
/** Deliveries of one message before RabbitMQ dead-letters it. */
export const DELIVERY_LIMIT = 5

/** The minimal channel surface the declarations need (amqplib's Channel has it). */
export interface DeclaringChannel {
  assertExchange: (name: string, type: string, opts: object) => Promise<unknown>
  assertQueue: (name: string, opts: object) => Promise<unknown>
  bindQueue: (queue: string, exchange: string, key: string) => Promise<unknown>
}

/** Quorum queues' members on a cluster: a majority (two) survives the loss of any one node. */
export const QUORUM_GROUP_SIZE = 3

export interface TopologyOptions {
  /** A cluster: every queue a quorum queue of QUORUM_GROUP_SIZE members (default false: one node). */
  replicated?: boolean
}

export async function declareTopology (ch: DeclaringChannel, ns: string, o: TopologyOptions = {}): Promise<void> {
  const n = names(ns)
  const quorum = { 'x-queue-type': 'quorum', ...(o.replicated === true ? { 'x-quorum-initial-group-size': QUORUM_GROUP_SIZE } : {}) }
  const classic = o.replicated === true ? quorum : { 'x-queue-type': 'classic' }
  const work = { durable: true, arguments: { ...quorum, 'x-dead-letter-exchange': n.deadExchange, 'x-delivery-limit': DELIVERY_LIMIT } }
  const interactive = { durable: true, arguments: { ...classic, 'x-dead-letter-exchange': n.deadInteractiveExchange } }
  await ch.assertExchange(n.deadExchange, 'fanout', { durable: true })
  await ch.assertQueue(n.deadQueue, { durable: true, arguments: quorum })
  await ch.bindQueue(n.deadQueue, n.deadExchange, '')
  await ch.assertExchange(n.deadInteractiveExchange, 'fanout', { durable: true })
  // The newest 10,000 for a day: enough to see what went wrong, never a store that grows without end.
  await ch.assertQueue(n.deadInteractiveQueue, { durable: true, arguments: { ...classic, 'x-max-length': 10_000, 'x-overflow': 'drop-head', 'x-message-ttl': 86_400_000 } })
  await ch.bindQueue(n.deadInteractiveQueue, n.deadInteractiveExchange, '')
  await ch.assertQueue(n.deadWatchQueue, { durable: true, arguments: quorum })
  await ch.bindQueue(n.deadWatchQueue, n.deadExchange, '')
  await ch.bindQueue(n.deadWatchQueue, n.deadInteractiveExchange, '')

  await ch.assertExchange(n.jobsExchange, 'direct', { durable: true })
  await ch.assertQueue(n.receiverQueue, work)
  await ch.bindQueue(n.receiverQueue, n.jobsExchange, n.receiverKey)
  await ch.assertQueue(n.receiverInteractiveQueue, interactive)
  await ch.bindQueue(n.receiverInteractiveQueue, n.jobsExchange, n.receiverInteractiveKey)
  await ch.assertQueue(n.delayQueue, {
    durable: true,
    arguments: { ...quorum, 'x-message-ttl': DELAY_MS, 'x-dead-letter-exchange': n.jobsExchange, 'x-dead-letter-routing-key': n.receiverKey }
  })

  await ch.assertExchange(n.agentsExchange, 'direct', { durable: true })
  for (const t of AGENT_QUEUE_TYPES) {
    await ch.assertQueue(n.agentQueue(t), work)
    await ch.bindQueue(n.agentQueue(t), n.agentsExchange, t)
    await ch.assertQueue(n.agentInteractiveQueue(t), interactive)
    await ch.bindQueue(n.agentInteractiveQueue(t), n.agentsExchange, n.agentKeyOf(t, 'status'))
  }
  await ch.assertExchange(n.consoleExchange, 'direct', { durable: true })
  await ch.assertQueue(n.mintQueue, interactive)
  await ch.bindQueue(n.mintQueue, n.consoleExchange, n.mintKey)

  await ch.assertExchange(n.resultsExchange, 'direct', { durable: true })
  await ch.assertQueue(n.resultsQueue, work)
  await ch.bindQueue(n.resultsQueue, n.resultsExchange, n.resultsKey)
  await ch.assertQueue(n.resultsInteractiveQueue, interactive)
  await ch.bindQueue(n.resultsInteractiveQueue, n.resultsExchange, n.resultsInteractiveKey)
}

/**
 * The per-message TTL (ms) for an interactive message of a job due at `deadline`: what is left of the
 * job's life, at least 1 ms (RabbitMQ drops a message whose TTL is 0 unless a consumer is waiting).
 */
export function ttlUntil (deadline: string | number, now = Date.now()): number {
  const at = typeof deadline === 'number' ? deadline : Date.parse(deadline)
  return Math.max(1, Math.ceil(at - now))
}

/** Removes everything `declareTopology` made (tests use their own namespace and clean it up). */
export async function deleteTopology (ch: { deleteQueue: (q: string) => Promise<unknown>, deleteExchange: (e: string) => Promise<unknown> }, ns: string): Promise<void> {
  const n = names(ns)
  for (const q of n.allQueues()) await ch.deleteQueue(q)
  for (const e of [n.jobsExchange, n.agentsExchange, n.consoleExchange, n.resultsExchange, n.deadExchange, n.deadInteractiveExchange]) await ch.deleteExchange(e)
}
