import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createServer, connect, type AddressInfo, type Socket } from 'node:net'
import { AmqpClient, names, type AmqpOptions, type Delivery, type Disposition } from '../../src/amqp/index.js'
import { UnavailableError, PortholeError } from '@porthole/contracts/errors'
import { createLogger } from '../../src/logging/index.js'
import { dropNamespace, services, tcpProxy, uniqueNamespace, waitFor, within, type TcpProxy } from '@porthole/testkit'

const log = createLogger({ name: 'test', level: 'silent' })

type Scope = { after: (fn: () => Promise<void>) => void }

async function client (t: Scope, url?: string, opts: Partial<AmqpOptions> = {}): Promise<{ c: AmqpClient, ns: string }> {
  const svc = await services()
  const ns = uniqueNamespace()
  const c = new AmqpClient({ url: url ?? svc.rabbitmqUrl, namespace: ns, log, name: 'test', backoff: { initialMs: 20, maxMs: 200 }, ...opts })
  t.after(async () => { await c.close(); await dropNamespace(ns, svc) })
  return { c, ns }
}

/** A TCP proxy to the real broker that the test can cut, refuse or freeze; returns the URL through it. */
async function throughProxy (t: Scope): Promise<{ proxy: TcpProxy, url: string }> {
  const svc = await services()
  const target = new URL(svc.rabbitmqUrl)
  const proxy = await tcpProxy(target.hostname, Number(target.port))
  t.after(async () => await proxy.close())
  return { proxy, url: proxy.url(svc.rabbitmqUrl) }
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
  const tries: number[] = []
  await c.consume(n.receiverQueue, async () => { tries.push(Date.now()); throw new Error('boom') }, { prefetch: 1 })
  const dead = collector()
  await c.consume(n.deadQueue, dead.handler, { prefetch: 1 })
  await c.publish(n.jobsExchange, n.receiverKey, { crash: true })
  await waitFor(() => dead.seen.length === 1, 15_000, 'dead letter after retries')
  assert.ok(tries.length >= 2 && tries.length <= 7, `tried ${tries.length} times`)
  // Each retry waits longer than the one before (an outage is ridden out over seconds, not milliseconds).
  const gaps = tries.slice(1).map((at, i) => at - (tries[i] as number))
  assert.ok(gaps.slice(2).every((g, i) => g > (gaps[i + 1] as number)), `gaps grow: ${gaps.join(', ')} ms`)
  assert.ok((tries.at(-1) as number) - (tries[0] as number) >= 2000, `retried over ${(tries.at(-1) as number) - (tries[0] as number)} ms`)
})

test('after the connection drops, publish fails at once, then the client reconnects and consumes again by itself', async (t) => {
  const { proxy, url } = await throughProxy(t)
  const { c, ns } = await client(t, url)
  await c.start()
  const n = names(ns)
  const { seen, handler } = collector()
  await c.consume(n.receiverQueue, handler, { prefetch: 10 })

  proxy.refuse()
  proxy.cut()
  await waitFor(() => !c.connected, 5000, 'disconnect noticed')
  // The proxy refuses every reconnect meanwhile: only a publish that does not wait for the broker can end.
  await within(assert.rejects(c.publish(n.jobsExchange, n.receiverKey, { during: 'outage' }), UnavailableError), 2500, 'publish during an outage to fail at once (before the 5 s confirm timeout could end it)')

  proxy.accept()
  await waitFor(() => c.connected, 10_000, 'reconnect')
  await c.publish(n.jobsExchange, n.receiverKey, { after: 'outage' })
  await waitFor(() => seen.length === 1, 5000, 'delivery after reconnect')
  assert.deepEqual(seen[0]?.body, { after: 'outage' })
})

test('close returns promptly even when the broker stopped answering', async (t) => {
  const { proxy, url } = await throughProxy(t)
  const { c, ns } = await client(t, url)
  await c.start()
  await c.consume(names(ns).receiverQueue, async () => 'ack', { prefetch: 1 })
  proxy.freeze()
  await within(c.close(), 15_000, 'close with a broker that stopped answering')
})

test('a publish the broker never confirms fails with UnavailableError after the confirm timeout instead of hanging', async (t) => {
  const { proxy, url } = await throughProxy(t)
  const { c, ns } = await client(t, url, { confirmTimeoutMs: 500 })
  await c.start()
  const n = names(ns)
  await c.publish(n.jobsExchange, n.receiverKey, { before: 'freeze' })
  proxy.freeze()
  // The message names the bound that ended it.
  await within(assert.rejects(c.publish(n.jobsExchange, n.receiverKey, { during: 'freeze' }), (e: unknown) => e instanceof UnavailableError && /confirm within 500 ms/.test(e.message)), 15_000, 'the unconfirmed publish to fail')
})

test('queueStats fails within its bound when the broker stopped answering (a /metrics scrape never hangs)', async (t) => {
  const { proxy, url } = await throughProxy(t)
  const { c, ns } = await client(t, url, { statsTimeoutMs: 300 })
  await c.start()
  const n = names(ns)
  assert.equal((await c.queueStats([n.receiverQueue])).length, 1)
  proxy.freeze()
  await within(assert.rejects(c.queueStats([n.receiverQueue, n.resultsQueue]), UnavailableError), 15_000, 'queueStats to fail with a frozen broker')
})

test('50 concurrent publishes are all confirmed without a MaxListenersExceededWarning', async (t) => {
  const { c, ns } = await client(t)
  await c.start()
  const n = names(ns)
  const warnings: Error[] = []
  const onWarning = (w: Error): void => { warnings.push(w) }
  process.on('warning', onWarning)
  t.after(() => { process.off('warning', onWarning) })
  const { seen, handler } = collector()
  await c.consume(n.receiverQueue, handler, { prefetch: 100 })
  await Promise.all(Array.from({ length: 50 }, async (_, i) => await c.publish(n.jobsExchange, n.receiverKey, { i })))
  await waitFor(() => seen.length === 50, 5000, '50 deliveries')
  await new Promise(resolve => setImmediate(resolve)) // warnings are emitted on the next tick
  assert.deepEqual(warnings.map(w => `${w.name}: ${w.message}`), [])
})

test('while the broker blocks publishers (resource alarm), publish fails at once; after it unblocks, publishing works', async (t) => {
  const svc = await services()
  const target = new URL(svc.rabbitmqUrl)
  const proxy = await alarmProxy(target.hostname, Number(target.port))
  t.after(async () => await proxy.close())
  const { c, ns } = await client(t, `amqp://${target.username}:${target.password}@127.0.0.1:${proxy.port}`)
  await c.start()
  const n = names(ns)
  await c.publish(n.jobsExchange, n.receiverKey, { before: 'alarm' })

  proxy.send(connectionBlocked('low on memory'))
  await waitFor(async () => await c.publish(n.jobsExchange, n.receiverKey, { probe: true }).then(() => false, (e: unknown) => e instanceof UnavailableError), 5000, 'blocked noticed')
  // Blocked until the proxy says otherwise: only a publish that does not wait for the unblock can end.
  await within(assert.rejects(c.publish(n.jobsExchange, n.receiverKey, { during: 'alarm' }), (e: unknown) => e instanceof UnavailableError && e.message === 'message broker is blocked (resource alarm)'), 2500, 'publish while blocked to fail at once (before the 5 s confirm timeout could end it)')

  proxy.send(connectionUnblocked())
  await waitFor(async () => await c.publish(n.jobsExchange, n.receiverKey, { after: 'alarm' }).then(() => true, () => false), 5000, 'publish after unblock')
})

/**
 * A loopback proxy to the real broker that forwards whole AMQP frames only, so that a test can slip a frame
 * of its own between two of the broker's: here the Connection.Blocked / Unblocked notifications RabbitMQ
 * sends on a memory or disk alarm (raising a real alarm would block every other test using the broker).
 */
async function alarmProxy (host: string, port: number): Promise<{ port: number, send: (frame: Buffer) => void, close: () => Promise<void> }> {
  const clients = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect({ host, port })
    clients.add(client)
    const drop = (): void => { client.destroy(); upstream.destroy(); clients.delete(client) }
    client.on('error', drop); upstream.on('error', drop); client.on('close', drop); upstream.on('close', drop)
    client.on('data', (b: Buffer) => upstream.write(b))
    let buf = Buffer.alloc(0)
    upstream.on('data', (b: Buffer) => {
      buf = Buffer.concat([buf, b])
      // A frame: type (1), channel (2), size (4), payload (size), 0xCE.
      let end = 0
      while (buf.length - end >= 7 && buf.length - end >= 8 + buf.readUInt32BE(end + 3)) end += 8 + buf.readUInt32BE(end + 3)
      if (end > 0) { client.write(buf.subarray(0, end)); buf = buf.subarray(end) }
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  return {
    port: typeof addr === 'object' && addr !== null ? addr.port : 0,
    send: (frame) => { for (const c of clients) c.write(frame) },
    close: async () => {
      for (const c of clients) c.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

/** A method frame on channel 0 of class Connection (10). */
function connectionFrame (method: number, args: Buffer): Buffer {
  const payload = Buffer.concat([Buffer.from([0, 10, 0, method]), args])
  const head = Buffer.alloc(7)
  head.writeUInt8(1, 0)
  head.writeUInt16BE(0, 1)
  head.writeUInt32BE(payload.length, 3)
  return Buffer.concat([head, payload, Buffer.from([0xce])])
}
function connectionBlocked (reason: string): Buffer {
  const r = Buffer.from(reason, 'utf8')
  return connectionFrame(60, Buffer.concat([Buffer.from([r.length]), r]))
}
function connectionUnblocked (): Buffer { return connectionFrame(61, Buffer.alloc(0)) }

test('close while the first connect is still under way leaves no connection open', async (t) => {
  const svc = await services()
  const target = new URL(svc.rabbitmqUrl)
  // A gate in front of the broker: it takes the connection at once but forwards nothing until opened.
  const held: Array<() => void> = []
  const upstreams = new Set<Socket>()
  const gate = createServer((down) => {
    const up = connect({ host: target.hostname, port: Number(target.port) })
    upstreams.add(up)
    const drop = (): void => { down.destroy(); up.destroy(); upstreams.delete(up) }
    for (const s of [down, up]) { s.on('close', drop); s.on('error', drop) }
    held.push(() => { down.pipe(up); up.pipe(down) })
  })
  await new Promise<void>(resolve => gate.listen(0, '127.0.0.1', resolve))
  t.after(async () => { for (const s of upstreams) s.destroy(); await new Promise(resolve => gate.close(resolve)) })
  const url = new URL(svc.rabbitmqUrl)
  url.port = String((gate.address() as AddressInfo).port)
  const { c } = await client(t, url.toString())
  void c.start(30_000).catch(() => {})
  await waitFor(() => held.length === 1, 5000, 'the client to reach the gate')
  const closed = c.close()
  for (const go of held.splice(0)) go()
  await within(closed, 10_000, 'close() to return')
  // The connection the connect opened meanwhile is closed too: the broker's side of it goes away.
  await waitFor(() => upstreams.size === 0, 5000, 'the connection opened during close() to be closed')
})
