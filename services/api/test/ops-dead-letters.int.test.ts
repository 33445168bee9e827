// The dashboard's dead letters under concurrency, on the real API, RabbitMQ and Redis: listings that run
// together while new dead letters arrive each see every dead letter that was there before they began, once,
// oldest first by the time of death (within a second by message id); once the arrivals stop, every listing
// is the same list in the same order.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { names } from '@porthole/shared/amqp'
import { waitFor } from '@porthole/testkit'
import { opsCall, opsLogin, startTestApi, type OpsLogin, type TestApi } from './helpers.js'

interface Listed { lane: string, messageId: string, deadAt?: string }

async function list (api: TestApi, s: OpsLogin): Promise<Listed[]> {
  const r = await opsCall(api, s, 'GET', '/ops/api/dead-letters')
  assert.equal(r.status, 200, r.raw)
  return r.body as Listed[]
}

/** The documented order: deadAt ascending; within one (second), lane, then message id. */
function assertOrdered (l: Listed[], what: string): void {
  const ids = l.map(d => d.messageId)
  assert.equal(new Set(ids).size, ids.length, `${what}: no dead letter twice`)
  for (let i = 1; i < l.length; i++) {
    const a = l[i - 1] as Listed
    const b = l[i] as Listed
    assert.ok(a.deadAt !== undefined && b.deadAt !== undefined, `${what}: every dead letter has its time of death`)
    const inOrder = a.deadAt < b.deadAt || (a.deadAt === b.deadAt && (a.lane < b.lane || (a.lane === b.lane && a.messageId < b.messageId)))
    assert.ok(inOrder, `${what}: ${JSON.stringify(a)} before ${JSON.stringify(b)}`)
  }
}

test('dead letters listed while others are listed and new ones arrive: complete, once each, oldest first; stable once they stop', async (t) => {
  const api = await startTestApi(t)
  const s = await opsLogin(api, api.adminToken)
  const n = names(api.ns)
  const ch = await api.deps.amqp.rawChannel()
  t.after(async () => { await ch.close().catch(() => {}) })
  // Real dead letters: job messages that expire in the interactive receiver queue, which nothing consumes here.
  const deadLetter = (): string => {
    const id = randomUUID()
    const body = { id, kind: 'status', serverId: randomUUID(), tenantId: randomUUID(), requestedBy: 'test', createdAt: new Date().toISOString(), deadline: new Date(Date.now() + 60_000).toISOString(), attempt: 1, traceId: 'x' }
    ch.sendToQueue(n.receiverInteractiveQueue, Buffer.from(JSON.stringify(body)), { messageId: id, expiration: '1', persistent: true })
    return id
  }
  const before = Array.from({ length: 12 }, deadLetter)
  await waitFor(async () => { const l = await list(api, s); return before.every(id => l.some(d => d.messageId === id)) }, 30_000, 'the first dead letters listed')

  // Listings side by side, and arrivals between and during them.
  const arriving: string[] = []
  const listings = await Promise.all(Array.from({ length: 6 }, async (_x, i) => {
    for (let k = 0; k < 3; k++) arriving.push(deadLetter())
    await new Promise(resolve => setImmediate(resolve))
    return { i, l: await list(api, s) }
  }))
  for (const { i, l } of listings) {
    assertOrdered(l, `listing ${i}`)
    for (const id of before) assert.ok(l.some(d => d.messageId === id), `listing ${i} holds ${id}, there before it began`)
    for (const d of l) assert.ok(before.includes(d.messageId) || arriving.includes(d.messageId), `listing ${i}: only this test's dead letters`)
  }

  // Once every arrival is there, listings agree, in the same order, whoever runs them at the same time.
  const all = [...before, ...arriving]
  await waitFor(async () => (await list(api, s)).length === all.length, 30_000, 'every dead letter listed')
  const [a, b, c] = await Promise.all([list(api, s), list(api, s), list(api, s)])
  assertOrdered(a as Listed[], 'the final listing')
  assert.deepEqual((a as Listed[]).map(d => d.messageId).sort(), [...all].sort())
  assert.deepEqual(b, a)
  assert.deepEqual(c, a)
  // Nothing was taken: the queue holds them all still.
  assert.equal((await ch.checkQueue(n.deadInteractiveQueue)).messageCount, all.length)
})
