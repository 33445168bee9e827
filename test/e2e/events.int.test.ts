// GET /v1/events through the whole system: the state changes of real jobs (API → RabbitMQ → receiver → kvm
// agent → libvirt) and the console session they open, in order; a reconnect with Last-Event-ID misses none;
// a customer's stream shows its tenant only.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocket } from 'ws'
import { openSse, tinyDomain, waitFor, type SseEvent, type SseStream } from '@porthole/testkit'
import { fileStack, kvmServer, power, tenant } from './fixtures.js'

const stack = await fileStack()
const acme = await tenant(stack, 'acme')
const other = await tenant(stack, 'other')

async function events (key: string, lastEventId?: string): Promise<SseStream> {
  const s = await openSse(`${stack.apiUrl}/v1/events`, key, lastEventId === undefined ? {} : { lastEventId })
  assert.equal(s.status, 200)
  await waitFor(() => s.text().includes(': connected'), 5000, 'the event stream to open')
  return s
}

const ofJob = (s: SseStream, jobId: string): string[] => s.events.filter(e => e.event === 'job' && e.data.jobId === jobId).map(e => e.data.state)
const ofSession = (s: SseStream, id: string): string[] => s.events.filter(e => e.event === 'console' && e.data.sessionId === id).map(e => e.data.event)
const LIFE = ['queued', 'dispatched', 'running', 'succeeded']

test('real jobs and their console arrive in order; a reconnect with Last-Event-ID misses none; tenants see their own', async (t) => {
  const dom = await tinyDomain(t)
  const serverId = await kvmServer(stack, acme.tenantId, dom)
  const mine = await events(acme.customerKey)
  const theirs = await events(other.customerKey)
  t.after(() => { mine.close(); theirs.close() })

  const off = await power(stack, serverId, 'off', acme.customerKey)
  assert.equal(off.state, 'succeeded', JSON.stringify(off))
  await waitFor(() => ofJob(mine, off.id).includes('succeeded'), 10_000, 'the power job\'s events')
  assert.deepEqual(ofJob(mine, off.id), LIFE)
  // Each event's time is the one the job's history records for that state.
  assert.deepEqual(mine.events.filter(e => e.data.jobId === off.id).map(e => e.data.at), off.history.map((h: { at: string }) => h.at))

  // Away: a second power job and a console (its job, and the session the gateway opens).
  const lastSeen = mine.events[mine.events.length - 1]?.id
  assert.ok(lastSeen !== undefined)
  mine.close()
  const on = await power(stack, serverId, 'on', acme.customerKey)
  assert.equal(on.state, 'succeeded')
  const con = await stack.api('POST', `/v1/servers/${serverId}/console`, { ttlSeconds: 600 }, { key: acme.customerKey })
  assert.equal(con.status, 201, JSON.stringify(con.body))

  const back = await events(acme.customerKey, lastSeen)
  t.after(() => { back.close() })
  await waitFor(() => ofSession(back, con.body.sessionId).includes('opened') && back.events.filter(e => e.event === 'job' && e.data.kind === 'console').some(e => e.data.state === 'succeeded'), 10_000, 'the missed events')
  assert.deepEqual(ofJob(back, on.id), LIFE)
  const consoleJob = back.events.find((e: SseEvent) => e.event === 'job' && e.data.kind === 'console')?.data.jobId as string
  assert.deepEqual(ofJob(back, consoleJob), LIFE)
  assert.ok(!back.events.some(e => e.data.jobId === off.id), 'nothing before Last-Event-ID again')
  // The session is opened before its job succeeds (the gateway stores it, then reports).
  const order = back.events.map(e => e.event === 'console' ? `console.${String(e.data.event)}` : `${e.data.jobId === on.id ? 'on' : 'console'}.${String(e.data.state)}`)
  assert.ok(order.indexOf('console.opened') < order.indexOf('console.succeeded'), order.join(' '))

  // Live, after the replay: a viewer connects and leaves, and the session is revoked.
  const u = new URL(con.body.url as string)
  const ws = new WebSocket(`ws://${u.host}${u.pathname}/ws`, ['binary', `porthole.token.${u.hash.slice(1)}`], { headers: { origin: u.origin } })
  await new Promise<void>((resolve, reject) => { ws.once('message', () => resolve()); ws.once('error', reject) })
  await waitFor(() => ofSession(back, con.body.sessionId).includes('connected'), 10_000, 'the connected event')
  assert.equal((await stack.api('DELETE', `/v1/console-sessions/${con.body.sessionId}`, undefined, { key: acme.customerKey })).status, 204)
  await waitFor(() => ofSession(back, con.body.sessionId).includes('closed'), 10_000, 'the closed event')
  assert.deepEqual(ofSession(back, con.body.sessionId), ['opened', 'connected', 'revoked', 'closed'])
  ws.close()

  const ids = back.events.map(e => e.id ?? '')
  assert.equal(new Set(ids).size, ids.length, 'no event twice')
  for (const s of [serverId, off.id, on.id, con.body.sessionId]) assert.ok(!theirs.text().includes(s), "another tenant's stream shows none of it")
})
