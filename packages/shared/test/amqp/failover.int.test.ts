// Two "nodes" are two TCP proxies to the one real broker: each can be cut, refused or frozen on its own, as a
// node of a cluster goes away. (test/e2e/chaos.int.test.ts does the same against a real three-node cluster.)
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AmqpClient, names, type Delivery } from '../../src/amqp/index.js'
import { createLogger } from '../../src/logging/index.js'
import { dropNamespace, services, tcpProxy, uniqueNamespace, waitFor, within, type Scope, type TcpProxy } from '@porthole/testkit'

const log = createLogger({ name: 'test', level: 'silent' })

async function twoNodes (t: Scope, opts: { confirmTimeoutMs?: number } = {}): Promise<{ a: TcpProxy, b: TcpProxy, c: AmqpClient, ns: string }> {
  const svc = await services()
  const target = new URL(svc.rabbitmqUrl)
  const a = await tcpProxy(target.hostname, Number(target.port))
  const b = await tcpProxy(target.hostname, Number(target.port))
  const ns = uniqueNamespace()
  // The second entry bare: it takes the first's credentials.
  const url = `${a.url(svc.rabbitmqUrl)},127.0.0.1:${b.port}`
  const c = new AmqpClient({ url, namespace: ns, log, name: 'test-failover', backoff: { initialMs: 20, maxMs: 200 }, ...opts })
  t.after(async () => { await c.close(); await a.close(); await b.close(); await dropNamespace(ns, svc) })
  return { a, b, c, ns }
}

test('the client connects to the first reachable node and moves to another when its node goes away', async (t) => {
  const { a, b, c, ns } = await twoNodes(t)
  a.refuse()
  await c.start()
  assert.equal(c.node, `127.0.0.1:${b.port}`, 'the first node refuses: the second is used')
  const n = names(ns)
  const seen: Delivery[] = []
  await c.consume(n.receiverQueue, async (d) => { seen.push(d); return 'ack' }, { prefetch: 10 })

  a.accept()
  b.refuse()
  b.cut()
  await waitFor(() => c.node === `127.0.0.1:${a.port}`, 15_000, 'the client to move to the other node')
  await c.publish(n.jobsExchange, n.receiverKey, { on: 'the other node' })
  await waitFor(() => seen.length === 1, 10_000, 'the consumer, subscribed again on the other node, to get the message')
  assert.deepEqual(seen[0]?.body, { on: 'the other node' })
})

test('a publish whose node goes away before its confirm is published again on the next node, once', async (t) => {
  const { a, c, ns } = await twoNodes(t, { confirmTimeoutMs: 20_000 })
  await c.start()
  const n = names(ns)
  const seen: Delivery[] = []
  await c.consume(n.receiverQueue, async (d) => { seen.push(d); return 'ack' }, { prefetch: 10 })
  assert.equal(c.node, `127.0.0.1:${a.port}`)

  // The node stops answering with the message on its way: neither confirmed nor known lost.
  a.freeze()
  const published = c.publish(n.jobsExchange, n.receiverKey, { job: 'j-1' }, { messageId: 'j-1' })
  a.refuse()
  a.cut()
  await within(published, 20_000, 'the publish to be confirmed by the other node')
  assert.equal(c.republished, 1)
  // A marker after it on the same channel: once the marker is in, whatever came of j-1 is in too.
  await c.publish(n.jobsExchange, n.receiverKey, { marker: true })
  await waitFor(() => seen.some(d => (d.body as { marker?: boolean }).marker === true), 10_000, 'the marker to be consumed')
  const j1 = seen.filter(d => d.raw.properties.messageId === 'j-1')
  assert.equal(j1.length, 1, 'the frozen node passed nothing on: the message arrived once, through the other node')
  assert.deepEqual(j1[0]?.body, { job: 'j-1' })
})

test('with several nodes every queue is a quorum queue, the interactive lane\'s too', async (t) => {
  const { c, ns } = await twoNodes(t)
  await c.start()
  const n = names(ns)
  const ch = await c.rawChannel()
  const closed = new Promise<void>(resolve => ch.once('close', () => resolve()))
  // A queue's type is fixed: declaring it as classic again is refused when it is a quorum queue.
  await assert.rejects(ch.assertQueue(n.receiverInteractiveQueue, { durable: true, arguments: { 'x-queue-type': 'classic', 'x-dead-letter-exchange': n.deadInteractiveExchange } }), /PRECONDITION_FAILED.*x-queue-type/)
  await closed
})
