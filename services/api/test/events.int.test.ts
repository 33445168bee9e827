import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { ConsoleSessionStore, compareEventIds } from '@porthole/shared/store'
import type { ConsoleSession } from '@porthole/contracts'
import { openSse, waitFor, type SseStream } from '@porthole/testkit'
import { kvmServer, listen, startTestApi, tenantWithKey, type TestApi } from './helpers.js'

async function stream (api: TestApi, base: string, key: string, path = '/v1/events', lastEventId?: string): Promise<SseStream> {
  const s = await openSse(base + path, key, lastEventId === undefined ? {} : { lastEventId })
  api.defer(async () => { s.close() })
  assert.equal(s.status, 200)
  assert.match(String(s.headers['content-type']), /^text\/event-stream/)
  await waitFor(() => s.text().includes(': connected'), 3000, 'the stream to open')
  return s
}

const jobStates = (s: SseStream, jobId: string): string[] => s.events.filter(e => e.event === 'job' && e.data.jobId === jobId).map(e => e.data.state)

test('GET /v1/events streams job events of the caller\'s tenant, with ids and heartbeats', async (t) => {
  const api = await startTestApi(t, { env: { SSE_HEARTBEAT_SECONDS: '1' } })
  const a = await tenantWithKey(api, 'a')
  const b = await tenantWithKey(api, 'b')
  const sa = await kvmServer(api, a.tenantId, 'va')
  const sb = await kvmServer(api, b.tenantId, 'vb')
  const base = await listen(api)
  const s = await stream(api, base, a.key)

  const ja = await api.call('POST', `/v1/servers/${sa}/power`, { action: 'on' }, { key: a.key })
  const jb = await api.call('POST', `/v1/servers/${sb}/power`, { action: 'on' }, { key: b.key })
  await api.jobs.transition(ja.body.id, 'dispatched')
  await api.jobs.transition(jb.body.id, 'dispatched')
  // A terminal event carries the job's final record inside the services (agent messages and all): the stream
  // must send only the event's own fields.
  await api.jobs.transition(ja.body.id, 'failed', { error: { code: 'connection', message: 'BMC 10.9.8.7 did not answer', retryable: true } })
  await waitFor(() => jobStates(s, ja.body.id).includes('failed'), 3000, 'the failed event')
  await waitFor(() => s.text().includes(': heartbeat'), 3000, 'a heartbeat')
  const events = s.events.filter(e => e.event === 'job')
  assert.deepEqual(events.map(e => [e.data.jobId, e.data.state]), [[ja.body.id, 'queued'], [ja.body.id, 'dispatched'], [ja.body.id, 'failed']])
  for (const e of events) assert.deepEqual(Object.keys(e.data).sort(), ['at', 'jobId', 'kind', 'serverId', 'state', 'tenantId'])
  // Ids are the stream's, increasing.
  const ids = events.map(e => e.id ?? '')
  for (const id of ids) assert.match(id, /^\d+-\d+$/)
  assert.deepEqual([...ids].sort((x, y) => x.localeCompare(y, 'en', { numeric: true })), ids)
  assert.ok(!s.text().includes('10.9.8.7'))
  assert.ok(!s.text().includes(jb.body.id), "another tenant's job never appears")
})

test('a reconnect with Last-Event-ID gets every event it missed, once, in order, then the live ones', async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'a')
  const server = await kvmServer(api, a.tenantId, 'va')
  const base = await listen(api)
  const first = await stream(api, base, a.key)
  const j1 = await api.call('POST', `/v1/servers/${server}/power`, { action: 'on' }, { key: a.key })
  await api.jobs.transition(j1.body.id, 'dispatched')
  await waitFor(() => jobStates(first, j1.body.id).length === 2, 3000, 'two events')
  const lastSeen = first.events[first.events.length - 1]?.id ?? ''
  first.close()

  // While the client is away: the rest of j1, and a whole second job.
  await api.jobs.transition(j1.body.id, 'running')
  await api.jobs.transition(j1.body.id, 'succeeded', { result: { power: 'on', checkedAt: new Date().toISOString() } })
  const j2 = await api.call('POST', `/v1/servers/${server}/power`, { action: 'off' }, { key: a.key })
  await api.jobs.transition(j2.body.id, 'dispatched')

  const again = await stream(api, base, a.key, '/v1/events', lastSeen)
  await waitFor(() => jobStates(again, j2.body.id).length === 2, 3000, 'the missed events')
  // and then live ones
  await api.jobs.transition(j2.body.id, 'running')
  await waitFor(() => jobStates(again, j2.body.id).includes('running'), 3000, 'a live event after the replay')
  assert.deepEqual(again.events.map(e => [e.data.jobId, e.data.state]), [
    [j1.body.id, 'running'], [j1.body.id, 'succeeded'], [j2.body.id, 'queued'], [j2.body.id, 'dispatched'], [j2.body.id, 'running']
  ])
  assert.ok(again.events.every(e => compareEventIds(e.id ?? '0-0', lastSeen) > 0), 'nothing at or before Last-Event-ID again')

  // ?lastEventId= is the same for clients that cannot set headers; a malformed id is a problem.
  const viaQuery = await stream(api, base, a.key, `/v1/events?lastEventId=${encodeURIComponent(lastSeen)}`)
  await waitFor(() => viaQuery.events.length === 5, 3000, 'the replay through the query')
  const bad = await api.call('GET', '/v1/events', undefined, { key: a.key, headers: { 'last-event-id': 'yesterday' } })
  assert.equal(bad.status, 400)
  assert.match(String(bad.headers['content-type']), /problem\+json/)
  assert.match(bad.body.detail, /Last-Event-ID/)
})

test('console session events: opened, connected, closed, revoked and expired, each once, to its tenant only', async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'a')
  const b = await tenantWithKey(api, 'b')
  const server = await kvmServer(api, a.tenantId, 'va')
  const base = await listen(api)
  const mine = await stream(api, base, a.key, '/v1/events?types=console')
  const theirs = await stream(api, base, b.key)
  const admin = await stream(api, base, api.adminToken, `/v1/events?tenantId=${a.tenantId}`)
  const sessions = new ConsoleSessionStore(api.redis, api.ns)
  const session = (ttlMs: number): ConsoleSession => ({
    id: randomUUID(), serverId: server, tenantId: a.tenantId, serverName: 'va', jobId: randomUUID(), protocol: 'vnc',
    target: { kid: 'k', iv: 'x', tag: 'x', data: 'x' } as unknown as ConsoleSession['target'], tokenHash: randomUUID().replace(/-/g, '').repeat(2),
    createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + ttlMs).toISOString(), singleUse: false
  })
  const long = session(600_000)
  await sessions.create(long)
  await sessions.takeViewer(long, 'viewer-1')
  await sessions.takeViewer(long, 'viewer-2') // a take-over: viewer-1 leaving afterwards closes nothing
  await sessions.dropViewer(long.id, 'viewer-1')
  await sessions.dropViewer(long.id, 'viewer-2')
  assert.equal((await api.call('DELETE', `/v1/console-sessions/${long.id}`, undefined, { key: a.key })).status, 204)
  const short = session(50)
  await sessions.create(short)
  // The gateway sweeps every second; here the test sweeps until the session's time has run out.
  await waitFor(async () => (await sessions.sweepExpired()) > 0, 5000, 'the expiry sweep to tell of the short session')
  assert.equal(await sessions.sweepExpired(Date.now() + 3_600_000), 0, 'a revoked session does not expire again')
  const told = (s: SseStream, id: string): string[] => s.events.filter(e => e.event === 'console' && e.data.sessionId === id).map(e => e.data.event)
  await waitFor(() => told(mine, short.id).includes('expired'), 3000, 'the expired event')
  assert.deepEqual(told(mine, long.id), ['opened', 'connected', 'connected', 'closed', 'revoked'])
  assert.deepEqual(told(mine, short.id), ['opened', 'expired'])
  assert.deepEqual(Object.keys(mine.events[0]?.data ?? {}).sort(), ['at', 'event', 'serverId', 'sessionId', 'tenantId'])
  await waitFor(() => told(admin, short.id).includes('expired'), 3000, 'the admin stream filtered to the tenant')
  assert.deepEqual(told(admin, long.id), told(mine, long.id))
  assert.ok(!theirs.text().includes(long.id) && !theirs.text().includes(short.id), "another tenant's stream shows none of it")
  // A customer naming another tenant sees nothing (as GET /v1/jobs answers []).
  const other = await stream(api, base, b.key, `/v1/events?tenantId=${a.tenantId}`, '0-0')
  await sessions.create(session(600_000))
  await waitFor(() => admin.events.filter(e => e.event === 'console').length === 8, 3000, 'the admin to see the third session')
  assert.equal(other.events.length, 0)
})
