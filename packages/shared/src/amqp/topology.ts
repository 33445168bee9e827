/**
 * Porthole's RabbitMQ topology, declared in this one place by every service at every (re)connect.
 * All work queues are quorum queues with a delivery limit and a dead-letter exchange, so a message that
 * keeps crashing its consumer ends in `<ns>.dead` instead of looping.
 */
import type { AgentType } from '../contracts/server.js'

export interface Names {
  jobsExchange: string
  receiverQueue: string
  receiverKey: string
  agentsExchange: string
  agentQueue: (t: AgentType) => string
  consoleExchange: string
  mintQueue: string
  mintKey: string
  resultsExchange: string
  resultsQueue: string
  resultsKey: string
  delayQueue: string
  deadExchange: string
  deadQueue: string
  /** Every queue, for metrics and clean-up. */
  allQueues: () => string[]
}

export const AGENT_QUEUE_TYPES: readonly AgentType[] = ['kvm', 'ipmi', 'ovirt']

export function names (ns: string): Names {
  const n: Names = {
    jobsExchange: `${ns}.jobs`,
    receiverQueue: `${ns}.jobs.receiver`,
    receiverKey: 'receiver',
    agentsExchange: `${ns}.agents`,
    agentQueue: t => `${ns}.agent.${t}`,
    consoleExchange: `${ns}.console`,
    mintQueue: `${ns}.console.mint`,
    mintKey: 'mint',
    resultsExchange: `${ns}.results`,
    resultsQueue: `${ns}.results`,
    resultsKey: 'update',
    delayQueue: `${ns}.jobs.delay`,
    deadExchange: `${ns}.dlx`,
    deadQueue: `${ns}.dead`,
    allQueues: () => [n.receiverQueue, ...AGENT_QUEUE_TYPES.map(n.agentQueue), n.mintQueue, n.resultsQueue, n.delayQueue, n.deadQueue]
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

export async function declareTopology (ch: DeclaringChannel, ns: string): Promise<void> {
  const n = names(ns)
  const work = { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': n.deadExchange, 'x-delivery-limit': DELIVERY_LIMIT } }
  await ch.assertExchange(n.deadExchange, 'fanout', { durable: true })
  await ch.assertQueue(n.deadQueue, { durable: true, arguments: { 'x-queue-type': 'quorum' } })
  await ch.bindQueue(n.deadQueue, n.deadExchange, '')

  await ch.assertExchange(n.jobsExchange, 'direct', { durable: true })
  await ch.assertQueue(n.receiverQueue, work)
  await ch.bindQueue(n.receiverQueue, n.jobsExchange, n.receiverKey)
  await ch.assertQueue(n.delayQueue, {
    durable: true,
    arguments: { 'x-queue-type': 'quorum', 'x-message-ttl': DELAY_MS, 'x-dead-letter-exchange': n.jobsExchange, 'x-dead-letter-routing-key': n.receiverKey }
  })

  await ch.assertExchange(n.agentsExchange, 'direct', { durable: true })
  for (const t of AGENT_QUEUE_TYPES) {
    await ch.assertQueue(n.agentQueue(t), work)
    await ch.bindQueue(n.agentQueue(t), n.agentsExchange, t)
  }
  await ch.assertExchange(n.consoleExchange, 'direct', { durable: true })
  await ch.assertQueue(n.mintQueue, work)
  await ch.bindQueue(n.mintQueue, n.consoleExchange, n.mintKey)

  await ch.assertExchange(n.resultsExchange, 'direct', { durable: true })
  await ch.assertQueue(n.resultsQueue, work)
  await ch.bindQueue(n.resultsQueue, n.resultsExchange, n.resultsKey)
}

/** Removes everything `declareTopology` made (tests use their own namespace and clean it up). */
export async function deleteTopology (ch: { deleteQueue: (q: string) => Promise<unknown>, deleteExchange: (e: string) => Promise<unknown> }, ns: string): Promise<void> {
  const n = names(ns)
  for (const q of n.allQueues()) await ch.deleteQueue(q)
  for (const e of [n.jobsExchange, n.agentsExchange, n.consoleExchange, n.resultsExchange, n.deadExchange]) await ch.deleteExchange(e)
}
