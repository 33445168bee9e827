import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AmqpClient, laneOf, names, REQUEUE_PAUSE_MS, ttlUntil, type Delivery } from '../../src/amqp/index.js'
import { JOB_KINDS } from '../../src/contracts/index.js'
import { createLogger } from '../../src/logging/index.js'
import { dropNamespace, services, uniqueNamespace, waitFor } from '../../src/testing/index.js'

const log = createLogger({ name: 'test', level: 'silent' })

async function client (t: { after: (fn: () => Promise<void>) => void }): Promise<{ c: AmqpClient, ns: string }> {
  const svc = await services()
  const ns = uniqueNamespace()
  const c = new AmqpClient({ url: svc.rabbitmqUrl, namespace: ns, log, name: 'test' })
  t.after(async () => { await c.close(); await dropNamespace(ns, svc) })
  await c.start()
  return { c, ns }
}

test('power jobs travel the durable lane, status and console jobs the interactive one, at every hop', async (t) => {
  const { c, ns } = await client(t)
  const n = names(ns)
  assert.deepEqual(JOB_KINDS.map(k => [k, laneOf(k)]), [['power', 'durable'], ['status', 'interactive'], ['console', 'interactive']])
  const seen = new Map<string, string>()
  const queues = [n.receiverQueue, n.receiverInteractiveQueue, n.agentQueue('kvm'), n.agentInteractiveQueue('kvm'), n.resultsQueue, n.resultsInteractiveQueue]
  for (const q of queues) await c.consume(q, async (d: Delivery) => { seen.set(`${(d.body as { kind: string, hop: string }).hop}:${(d.body as { kind: string }).kind}`, q); return 'ack' }, { prefetch: 10 })
  for (const kind of JOB_KINDS) {
    await c.publish(n.jobsExchange, n.receiverKeyOf(kind), { kind, hop: 'receiver' })
    await c.publish(n.agentsExchange, n.agentKeyOf('kvm', kind), { kind, hop: 'agent' })
    await c.publish(n.resultsExchange, n.resultsKeyOf(kind), { kind, hop: 'results' })
  }
  await waitFor(() => seen.size === 9, 5000, 'nine deliveries')
  for (const kind of JOB_KINDS) {
    const i = laneOf(kind) === 'interactive'
    assert.equal(seen.get(`receiver:${kind}`), i ? n.receiverInteractiveQueue : n.receiverQueue)
    assert.equal(seen.get(`agent:${kind}`), i ? n.agentInteractiveQueue('kvm') : n.agentQueue('kvm'))
    assert.equal(seen.get(`results:${kind}`), i ? n.resultsInteractiveQueue : n.resultsQueue)
  }
})

test('an interactive message nobody took by its deadline is dead-lettered, not delivered late', async (t) => {
  const { c, ns } = await client(t)
  const n = names(ns)
  const deadline = new Date(Date.now() + 300).toISOString()
  await c.publish(n.jobsExchange, n.receiverInteractiveKey, { late: true }, { expiration: ttlUntil(deadline) })
  const dead: unknown[] = []
  await c.consume(n.deadInteractiveQueue, async (d) => { dead.push(d.body); return 'ack' }, { prefetch: 1 })
  await new Promise(resolve => setTimeout(resolve, 600))
  // A consumer that comes after the deadline gets nothing; the interactive lane's dead-letter queue has it.
  const got: unknown[] = []
  await c.consume(n.receiverInteractiveQueue, async (d) => { got.push(d.body); return 'ack' }, { prefetch: 1 })
  await waitFor(() => dead.length === 1, 5000, 'dead letter')
  assert.deepEqual(dead, [{ late: true }])
  await new Promise(resolve => setTimeout(resolve, 200))
  assert.deepEqual(got, [])
  assert.equal(ttlUntil(Date.now() - 5000), 1, 'a deadline in the past still gives a valid TTL')
})

test('a classic-queue message requeued again and again is paused between deliveries, not spun', async (t) => {
  const { c, ns } = await client(t)
  const n = names(ns)
  let deliveries = 0
  await c.consume(n.receiverInteractiveQueue, async () => { deliveries++; return 'requeue' }, { prefetch: 1 })
  await c.publish(n.jobsExchange, n.receiverInteractiveKey, { flaky: true }, { expiration: 1500 })
  await new Promise(resolve => setTimeout(resolve, 1000))
  // Without the pause a requeue loop on loopback runs thousands of times a second.
  assert.ok(deliveries >= 2, `redelivered (${deliveries})`)
  assert.ok(deliveries <= Math.ceil(1000 / REQUEUE_PAUSE_MS) + 2, `at most one delivery per pause, got ${deliveries}`)
})
