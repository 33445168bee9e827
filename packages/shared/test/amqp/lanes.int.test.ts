import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AmqpClient, laneOf, names, REQUEUE_PAUSE_MS, ttlUntil, type Delivery } from '../../src/amqp/index.js'
import { JOB_KINDS } from '@porthole/contracts'
import { createLogger } from '../../src/logging/index.js'
import { dropNamespace, services, uniqueNamespace, waitFor } from '@porthole/testkit'

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
  // The dead letter is the event that the deadline passed; the broker's own count then says the queue no
  // longer holds it for a late consumer.
  await waitFor(() => dead.length === 1, 5000, 'dead letter')
  assert.deepEqual(dead, [{ late: true }])
  const [q] = await c.queueStats([n.receiverInteractiveQueue])
  assert.equal(q?.messages, 0, 'the expired message left the work queue')
  assert.equal(ttlUntil(Date.now() - 5000), 1, 'a deadline in the past still gives a valid TTL')
})

test('a classic-queue message requeued again and again is paused between deliveries, not spun', async (t) => {
  const { c, ns } = await client(t)
  const n = names(ns)
  const at: number[] = []
  await c.consume(n.receiverInteractiveQueue, async () => { at.push(performance.now()); return at.length < 4 ? 'requeue' : 'ack' }, { prefetch: 1 })
  await c.publish(n.jobsExchange, n.receiverInteractiveKey, { flaky: true }, { expiration: 30_000 })
  await waitFor(() => at.length === 4, 15_000, 'four deliveries')
  // Without the pause a requeue loop on loopback runs thousands of times a second. The first requeue goes back
  // at once; each later one waits at least the pause (a minimum, which a slower machine only lengthens).
  const gaps = at.slice(1).map((t, i) => t - (at[i] as number))
  for (const g of gaps.slice(1)) assert.ok(g >= REQUEUE_PAUSE_MS - 5, `redeliveries ${gaps.map(x => x.toFixed(0)).join(', ')} ms apart`)
})
