import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { AmqpClient, names, type Delivery, type Disposition } from '../../src/amqp/index.js'
import { UnavailableError, PortholeError } from '../../src/errors/index.js'
import { createLogger } from '../../src/logging/index.js'
import { dropNamespace, services, tcpProxy, uniqueNamespace, waitFor } from '../../src/testing/index.js'

const log = createLogger({ name: 'test', level: 'silent' })

async function client (t: { after: (fn: () => Promise<void>) => void }, url?: string, ns = uniqueNamespace()): Promise<{ c: AmqpClient, ns: string }> {
  const svc = await services()
  const c = new AmqpClient({ url: url ?? svc.rabbitmqUrl, namespace: ns, log, name: 'test', backoff: { initialMs: 20, maxMs: 200 } })
  t.after(async () => { await c.close(); await dropNamespace(ns, svc) })
  return { c, ns }
}

function collector (): { seen: Delivery[], handler: (d: Delivery) => Promise<Disposition> } {
  const seen: Delivery[] = []
  return { seen, handler: async (d) => { seen.push(d); return 'ack' } }
}

test('a confirmed publish is consumed once and acked', async (t) => {
  const { c, ns } = await client(t)
  await c.start()
  const n = names(ns)
  const { seen, handler } = collector()
  await c.consume(n.receiverQueue, handler, { prefetch: 10 })
  const id = randomUUID()
  await c.publish(n.jobsExchange, n.receiverKey, { hello: 'world' }, { messageId: id })
  await waitFor(() => seen.length === 1, 5000, 'delivery')
  assert.deepEqual(seen[0]?.body, { hello: 'world' })
  assert.equal(seen[0]?.raw.properties.messageId, id)
  const [stats] = await c.queueStats([n.receiverQueue])
  assert.equal(stats?.messages, 0)
  assert.equal(stats?.consumers, 1)
})

test('an unroutable message rejects the publish instead of vanishing', async (t) => {
  const { c, ns } = await client(t)
  await c.start()
  await assert.rejects(c.publish(names(ns).jobsExchange, 'no-such-route', { x: 1 }), (e: unknown) => e instanceof PortholeError && /unroutable/.test(e.message))
})

test('a message a handler declares dead goes to the dead-letter queue', async (t) => {
  const { c, ns } = await client(t)
  await c.start()
  const n = names(ns)
  await c.consume(n.receiverQueue, async () => 'dead', { prefetch: 1 })
  const dead = collector()
  await c.consume(n.deadQueue, dead.handler, { prefetch: 1 })
  await c.publish(n.jobsExchange, n.receiverKey, { poison: true })
  await waitFor(() => dead.seen.length === 1, 5000, 'dead letter')
  assert.deepEqual(dead.seen[0]?.body, { poison: true })
})

test('a handler that keeps throwing is dead-lettered after the delivery limit, not looped forever', async (t) => {
  const { c, ns } = await client(t)
  await c.start()
  const n = names(ns)
  let tries = 0
  await c.consume(n.receiverQueue, async () => { tries++; throw new Error('boom') }, { prefetch: 1 })
  const dead = collector()
  await c.consume(n.deadQueue, dead.handler, { prefetch: 1 })
  await c.publish(n.jobsExchange, n.receiverKey, { crash: true })
  await waitFor(() => dead.seen.length === 1, 10_000, 'dead letter after retries')
  assert.ok(tries >= 2 && tries <= 7, `tried ${tries} times`)
})

test('after the connection drops, publish fails at once, then the client reconnects and consumes again by itself', async (t) => {
  const svc = await services()
  const target = new URL(svc.rabbitmqUrl)
  const proxy = await tcpProxy(target.hostname, Number(target.port))
  t.after(async () => await proxy.close())
  const { c, ns } = await client(t, proxy.url(svc.rabbitmqUrl))
  await c.start()
  const n = names(ns)
  const { seen, handler } = collector()
  await c.consume(n.receiverQueue, handler, { prefetch: 10 })

  proxy.refuse()
  proxy.cut()
  await waitFor(() => !c.connected, 5000, 'disconnect noticed')
  const t0 = Date.now()
  await assert.rejects(c.publish(n.jobsExchange, n.receiverKey, { during: 'outage' }), UnavailableError)
  assert.ok(Date.now() - t0 < 100, 'publish during an outage must fail at once')

  proxy.accept()
  await waitFor(() => c.connected, 10_000, 'reconnect')
  await c.publish(n.jobsExchange, n.receiverKey, { after: 'outage' })
  await waitFor(() => seen.length === 1, 5000, 'delivery after reconnect')
  assert.deepEqual(seen[0]?.body, { after: 'outage' })
})

test('close returns promptly even when the broker stopped answering', async (t) => {
  const svc = await services()
  const target = new URL(svc.rabbitmqUrl)
  const proxy = await tcpProxy(target.hostname, Number(target.port))
  t.after(async () => await proxy.close())
  const { c, ns } = await client(t, proxy.url(svc.rabbitmqUrl))
  await c.start()
  await c.consume(names(ns).receiverQueue, async () => 'ack', { prefetch: 1 })
  proxy.freeze()
  const t0 = Date.now()
  await c.close()
  assert.ok(Date.now() - t0 < 4000, `close took ${Date.now() - t0} ms`)
})
