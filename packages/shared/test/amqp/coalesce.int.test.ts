import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Socket, createServer, connect, type AddressInfo } from 'node:net'
import amqp from 'amqplib'
import { amqpSocket, coalesceWrites } from '../../src/amqp/coalesce.js'
import { services } from '@porthole/testkit'

/** A connected socket pair on loopback; both ends are destroyed after the test. */
async function socketPair (t: { after: (fn: () => Promise<void>) => void }): Promise<{ client: Socket, received: () => Buffer }> {
  const chunks: Buffer[] = []
  const server = createServer(s => { s.on('data', (c: Buffer) => chunks.push(c)) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1')
  await new Promise<void>(resolve => client.once('connect', resolve))
  t.after(async () => { client.destroy(); await new Promise<void>(resolve => server.close(() => resolve())) })
  return { client, received: () => Buffer.concat(chunks) }
}

/** Counts the calls that hand data to the kernel (`_write` for one chunk, `_writev` for several). */
function countFlushes (s: Socket): { writes: number, chunks: number } {
  const n = { writes: 0, chunks: 0 }
  const internal = s as unknown as { _write: (...a: unknown[]) => void, _writev: (chunks: unknown[], cb: unknown) => void }
  const one = internal._write.bind(s)
  const many = internal._writev.bind(s)
  internal._write = (...a: unknown[]) => { n.writes++; n.chunks++; one(...a) }
  internal._writev = (chunks: unknown[], cb: unknown) => { n.writes++; n.chunks += chunks.length; many(chunks, cb) }
  return n
}

test('the writes of one turn of the event loop leave in one socket write, in order, and the next turn writes again', async (t) => {
  const { client, received } = await socketPair(t)
  coalesceWrites(client)
  coalesceWrites(client) // a second call changes nothing
  const n = countFlushes(client)
  for (let i = 0; i < 10; i++) client.write(`frame ${i};`)
  assert.equal(n.writes, 0, 'nothing is written while the turn runs')
  await new Promise(resolve => setImmediate(resolve))
  assert.deepEqual(n, { writes: 1, chunks: 10 })
  client.write('last;')
  await new Promise(resolve => setImmediate(resolve))
  assert.deepEqual(n, { writes: 2, chunks: 11 })
  const expected = Array.from({ length: 10 }, (_, i) => `frame ${i};`).join('') + 'last;'
  const deadline = Date.now() + 30_000
  while (received().toString() !== expected && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
  assert.equal(received().toString(), expected)
})

test('without coalescing the same writes leave one by one (what the test above would see otherwise)', async (t) => {
  const { client } = await socketPair(t)
  const n = countFlushes(client)
  for (let i = 0; i < 10; i++) client.write(`frame ${i};`)
  await new Promise(resolve => setImmediate(resolve))
  assert.ok(n.writes > 1, `${n.writes} writes`)
})

test('the pinned amqplib keeps its socket where the client looks for it', async (t) => {
  const svc = await services()
  const conn = await amqp.connect(svc.rabbitmqUrl)
  t.after(async () => { await conn.close() })
  const s = amqpSocket(conn)
  assert.ok(s instanceof Socket, 'ChannelModel.connection.stream is the connection\'s socket')
  assert.equal(amqpSocket({}), undefined)
  // Frames still flow both ways through a coalesced socket: a confirmed publish and its queue's answer.
  coalesceWrites(s)
  const ch = await conn.createConfirmChannel()
  const q = await ch.assertQueue('', { exclusive: true, autoDelete: true })
  await new Promise<void>((resolve, reject) => ch.sendToQueue(q.queue, Buffer.from('x'), {}, err => { if (err !== null && err !== undefined) reject(err as Error); else resolve() }))
  const got = await ch.get(q.queue, { noAck: true })
  assert.ok(got !== false && got.content.toString() === 'x')
})
