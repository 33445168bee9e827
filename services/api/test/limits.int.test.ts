import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { request, type IncomingMessage } from 'node:http'
import { connect as tcpConnect, type AddressInfo } from 'node:net'
import { SecretBox } from '@porthole/shared/crypto'
import { ConsoleSessionStore, keys, urlHandoverAad } from '@porthole/shared/store'
import { waitFor } from '@porthole/testkit'
import { assertLimited, consumeJobs, kvmServer, listenPort, secondReplica, startTestApi, tenantWithKey, type Reply } from './helpers.js'

const listen = listenPort

/** Opens GET /v1/events; resolves with the response (any status) and the text received so far, growing. */
async function openStream (port: number, key: string): Promise<{ res: IncomingMessage, text: () => string, ended: Promise<void> }> {
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/events', headers: { authorization: `Bearer ${key}` } }, resolve)
    req.on('error', reject)
    req.end()
  })
  let text = ''
  res.setEncoding('utf8')
  res.on('data', (c: string) => { text += c })
  const ended = new Promise<void>(resolve => { res.once('end', resolve); res.once('close', resolve) })
  return { res, text: () => text, ended }
}

async function bounded<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms) })])
  } finally { clearTimeout(t) }
}

test('requests per key: past RATE_LIMIT_CUSTOMER a key gets 429 naming the limit; two replicas share the count; admin counts apart', async (t) => {
  const api = await startTestApi(t, { env: { RATE_LIMIT_CUSTOMER: '5', RATE_LIMIT_ADMIN: '1000' } })
  const a = await tenantWithKey(api, 'rl')
  const { app: other } = await secondReplica(api)
  const viaOther = async (key: string): Promise<Reply> => {
    const res = await other.inject({ method: 'GET', url: '/v1/servers', headers: { authorization: `Bearer ${key}` } })
    return { status: res.statusCode, headers: res.headers, body: JSON.parse(res.body), raw: res.body }
  }
  for (let i = 0; i < 3; i++) assert.equal((await api.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
  for (let i = 0; i < 2; i++) assert.equal((await viaOther(a.key)).status, 200)
  // The sixth request in the window, on either replica, is refused.
  const refused = await viaOther(a.key)
  assertLimited(refused, 'requests_per_key', 60)
  assert.equal(refused.body.setting, 'RATE_LIMIT_CUSTOMER')
  assert.equal(refused.body.max, 5)
  assertLimited(await api.call('GET', '/v1/servers', undefined, { key: a.key }), 'requests_per_key', 60)
  // Another key has its own count, and the admin's is separate and larger.
  const b = await tenantWithKey(api, 'rl2')
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: b.key })).status, 200)
  for (let i = 0; i < 8; i++) assert.equal((await api.call('GET', '/v1/tenants')).status, 200)
  const metrics = await api.app.inject({ method: 'GET', url: '/metrics' })
  assert.match(metrics.body, /porthole_limit_refusals_total\{limit="requests_per_key"\} 1\n/)
  // Counted in Redis under the namespace, not in the process.
  assert.ok(await api.redis.exists(`${keys(api.ns).requestRate}${a.keyId}`) === 1)
})

test('failed authentications per address: past AUTH_FAILURE_LIMIT even a good key from that address gets 429; other addresses are unaffected', async (t) => {
  const api = await startTestApi(t, { env: { AUTH_FAILURE_LIMIT: '3', TRUST_PROXY: 'true' } })
  const a = await tenantWithKey(api, 'af')
  const from = (ip: string): Record<string, string> => ({ 'x-forwarded-for': ip })
  for (let i = 0; i < 3; i++) {
    const r = await api.call('GET', '/v1/servers', undefined, { key: `ph_${randomBytes(32).toString('base64url')}`, headers: from('203.0.113.7') })
    assert.equal(r.status, 401)
  }
  const r = await api.call('GET', '/v1/servers', undefined, { key: a.key, headers: from('203.0.113.7') })
  assertLimited(r, 'auth_failures_per_address', 60)
  assert.equal(r.body.setting, 'AUTH_FAILURE_LIMIT')
  assertLimited(await api.call('GET', '/v1/servers', undefined, { key: null, headers: from('203.0.113.7') }), 'auth_failures_per_address', 60)
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: a.key, headers: from('203.0.113.8') })).status, 200)
  // Nothing secret in the refusal: the presented key is not echoed.
  assert.ok(!r.raw.includes(a.key))
})

test('console sessions per server and per tenant: live sessions and console jobs under way count; the refusal creates no job; revoking frees a slot', async (t) => {
  const api = await startTestApi(t, { env: { CONSOLE_SESSIONS_PER_SERVER: '2', CONSOLE_SESSIONS_PER_TENANT: '3' } })
  const a = await tenantWithKey(api, 'cq')
  const s1 = await kvmServer(api, a.tenantId, 'cq1')
  const s2 = await kvmServer(api, a.tenantId, 'cq2')
  const store = new ConsoleSessionStore(api.redis, api.ns)
  /** A live session as the gateway stores it. */
  const session = async (serverId: string): Promise<string> => {
    const id = randomUUID()
    const now = Date.now()
    await store.create({
      id, serverId, tenantId: a.tenantId, serverName: 'x', jobId: randomUUID(), protocol: 'vnc',
      target: { v: 1, kid: 'k1', iv: 'aaaa', tag: 'aaaa', ct: 'aaaa' },
      tokenHash: randomBytes(32).toString('hex'), createdAt: new Date(now).toISOString(), expiresAt: new Date(now + 600_000).toISOString(), singleUse: false
    })
    return id
  }
  const ask = async (serverId: string): Promise<Reply> => await api.call('POST', `/v1/servers/${serverId}/console?wait=0`, {}, { key: a.key })
  const jobsOf = async (serverId: string): Promise<number> => await api.redis.zcard(keys(api.ns).jobsByServer(serverId))

  // One console job under way (nothing consumes it) and one live session: the server is full.
  assert.equal((await ask(s1)).status, 202)
  const live = await session(s1)
  const before = await jobsOf(s1)
  const refused = await ask(s1)
  assertLimited(refused, 'console_sessions_per_server', 600)
  assert.equal(refused.body.setting, 'CONSOLE_SESSIONS_PER_SERVER')
  assert.equal(await jobsOf(s1), before, 'no job was created')
  // A revoked session no longer counts.
  assert.equal((await api.call('DELETE', `/v1/console-sessions/${live}`, undefined, { key: a.key })).status, 204)
  assert.equal((await ask(s1)).status, 202)
  // Tenant: two on s1 (jobs under way), one session on s2 = 3.
  await session(s2)
  assertLimited(await ask(s2), 'console_sessions_per_tenant', 600)
  // Another tenant is not affected.
  const b = await tenantWithKey(api, 'cq-b')
  const sb = await kvmServer(api, b.tenantId, 'cqb')
  assert.equal((await api.call('POST', `/v1/servers/${sb}/console?wait=0`, {}, { key: b.key })).status, 202)
})

test('event streams per key: the next stream past EVENT_STREAMS_PER_KEY is a 429, across replicas; closing one frees its slot', async (t) => {
  const api = await startTestApi(t, { env: { EVENT_STREAMS_PER_KEY: '2', SSE_HEARTBEAT_SECONDS: '1' } })
  const a = await tenantWithKey(api, 'sse')
  const { app: other } = await secondReplica(api)
  const p1 = await listen(api.app)
  const p2 = await listen(other)
  const s1 = await openStream(p1, a.key)
  const s2 = await openStream(p2, a.key)
  t.after(() => { s1.res.destroy(); s2.res.destroy() })
  assert.equal(s1.res.statusCode, 200)
  assert.equal(s2.res.statusCode, 200)
  const third = await openStream(p1, a.key)
  t.after(() => { third.res.destroy() })
  await bounded(third.ended, 5000, 'the refusal to end')
  assertLimited({ status: third.res.statusCode ?? 0, headers: third.res.headers, body: JSON.parse(third.text()), raw: third.text() }, 'event_streams_per_key', 60)
  // Past the lease of the first admission (three heartbeats), the heartbeats have kept both slots held.
  await waitFor(() => s1.text().split(': heartbeat').length > 5 && s2.text().split(': heartbeat').length > 5, 15_000, 'four heartbeats on each stream')
  const fourth = await openStream(p2, a.key)
  t.after(() => { fourth.res.destroy() })
  assert.equal(fourth.res.statusCode, 429)
  s2.res.destroy()
  const again = await waitFor(async () => {
    const s = await openStream(p1, a.key)
    if (s.res.statusCode === 200) return s
    s.res.destroy()
    return undefined
  }, 10_000, 'a freed slot', 100)
  t.after(() => { again.res.destroy() })
  await waitFor(() => again.text().includes(': connected'), 3000, 'the stream to open')
})

test('deleting an API key ends its open event streams at once, on every replica', async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'del')
  const b = await tenantWithKey(api, 'keep')
  const { app: other } = await secondReplica(api)
  const s1 = await openStream(await listen(api.app), a.key)
  const s2 = await openStream(await listen(other), a.key)
  const kept = await openStream((other.server.address() as AddressInfo).port, b.key)
  t.after(() => { s1.res.destroy(); s2.res.destroy(); kept.res.destroy() })
  await waitFor(() => s1.text().includes(': connected') && s2.text().includes(': connected') && kept.text().includes(': connected'), 3000, 'the streams to open')
  assert.equal((await api.call('DELETE', `/v1/api-keys/${a.keyId}`)).status, 204)
  await bounded(Promise.all([s1.ended, s2.ended]), 5000, 'the deleted key\'s streams to end')
  assert.match(s2.text(), /event: end\ndata: \{"reason":"api-key.revoked"\}/)
  assert.equal(kept.res.readableEnded, false, "another key's stream goes on")
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: a.key })).status, 401)
})

test('suspending a tenant refuses its keys, ends its streams, refuses new consoles; resume restores; both audited', async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'susp')
  const b = await tenantWithKey(api, 'other')
  const server = await kvmServer(api, a.tenantId, 'sv')
  const stream = await openStream(await listen(api.app), a.key)
  t.after(() => { stream.res.destroy() })
  await waitFor(() => stream.text().includes(': connected'), 3000, 'the stream to open')

  assert.equal((await api.call('POST', `/v1/tenants/${a.tenantId}/suspend`, undefined, { key: a.key })).status, 403, 'admin only')
  const s = await api.call('POST', `/v1/tenants/${a.tenantId}/suspend`)
  assert.equal(s.status, 200, s.raw)
  assert.equal(s.body.suspended, true)
  await bounded(stream.ended, 5000, 'the tenant\'s stream to end')
  const refused = await api.call('GET', '/v1/servers', undefined, { key: a.key })
  assert.equal(refused.status, 403)
  assert.match(String(refused.headers['content-type']), /^application\/problem\+json/)
  assert.match(refused.body.detail, /suspended/)
  assert.equal((await api.call('GET', `/v1/tenants/${a.tenantId}`)).body.suspended, true)
  assert.equal((await api.call('GET', `/v1/tenants/${b.tenantId}`)).body.suspended, false)
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: b.key })).status, 200, 'another tenant is unaffected')
  // Not even an admin opens a console on a suspended tenant's server; no job is created.
  const c = await api.call('POST', `/v1/servers/${server}/console?wait=0`, {})
  assert.equal(c.status, 409)
  assert.match(c.body.detail, /suspended/)
  assert.equal(await api.redis.zcard(keys(api.ns).jobsByServer(server)), 0)

  const r = await api.call('POST', `/v1/tenants/${a.tenantId}/resume`)
  assert.equal(r.status, 200)
  assert.equal(r.body.suspended, false)
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
  assert.equal((await api.call('POST', `/v1/servers/${server}/console?wait=0`, {}, { key: a.key })).status, 202)
  assert.equal((await api.call('POST', `/v1/tenants/${randomUUID()}/suspend`)).status, 404)
  const audit = await api.call('GET', `/v1/audit?tenantId=${a.tenantId}`)
  const actions = audit.body.map((e: { action: string }) => e.action)
  assert.ok(actions.includes('tenant.suspend') && actions.includes('tenant.resume'), actions.join(','))
})

test('a console job that ends after its tenant was suspended delivers no URL, waited for or polled, and the session it opened is revoked', async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'late')
  const server = await kvmServer(api, a.tenantId, 'late1')
  const store = new ConsoleSessionStore(api.redis, api.ns)
  const box = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: api.secretKey, PORTHOLE_SECRET_KEY_ID: api.config.PORTHOLE_SECRET_KEY_ID, PORTHOLE_OLD_SECRET_KEYS: '' })
  const sessionOf = new Map<string, string>()
  await consumeJobs(api, async (body) => {
    const job = body as { id: string }
    // The suspension's sweep happens while the job runs; then the gateway stores the session, as it would.
    assert.equal((await api.call('POST', `/v1/tenants/${a.tenantId}/suspend`)).status, 200)
    const now = Date.now()
    const sessionId = randomUUID()
    sessionOf.set(job.id, sessionId)
    await store.create({
      id: sessionId, serverId: server, tenantId: a.tenantId, serverName: 'late1', jobId: job.id, protocol: 'vnc',
      target: { v: 1, kid: 'k1', iv: 'aaaa', tag: 'aaaa', ct: 'aaaa' },
      tokenHash: randomBytes(32).toString('hex'), createdAt: new Date(now).toISOString(), expiresAt: new Date(now + 600_000).toISOString(), singleUse: false
    }, { jobId: job.id, sealedUrl: box.seal('http://gw.example/s/x#tok', urlHandoverAad(job.id)), ttlSeconds: 60 })
    await api.jobs.transition(job.id, 'succeeded', { result: { sessionId, protocol: 'vnc', expiresAt: new Date(now + 600_000).toISOString() } })
  })
  const r = await api.call('POST', `/v1/servers/${server}/console?wait=10`, {}, { key: a.key })
  assert.equal(r.status, 409, r.raw)
  assert.ok(!r.raw.includes('#tok'))
  assert.match(r.body.detail, /suspended/)
  const first = [...sessionOf.values()][0] as string
  assert.ok((await store.get(first))?.revokedAt !== undefined, 'the session was revoked')

  // Polled instead (?wait=0, by an admin, whose key suspension does not refuse): the job shows no URL.
  assert.equal((await api.call('POST', `/v1/tenants/${a.tenantId}/resume`)).status, 200)
  const queued = await api.call('POST', `/v1/servers/${server}/console?wait=0`, {})
  assert.equal(queued.status, 202, queued.raw)
  const done = await waitFor(async () => {
    const j = await api.call('GET', `/v1/jobs/${queued.body.id as string}`)
    return j.body.state === 'succeeded' ? j : undefined
  }, 10_000, 'the polled console job to succeed')
  assert.ok(!done.raw.includes('#tok'))
  assert.equal(done.body.result.url, undefined)
  assert.ok((await store.get(sessionOf.get(queued.body.id) as string))?.revokedAt !== undefined, 'the polled session was revoked')
})

test('REQUEST_TIMEOUT_SECONDS ends a request that is never finished; a ?wait= long-poll past it still answers', async (t) => {
  const api = await startTestApi(t, { env: { REQUEST_TIMEOUT_SECONDS: '1' } })
  const a = await tenantWithKey(api, 'to')
  const server = await kvmServer(api, a.tenantId, 'to1')
  const port = await listen(api.app)
  // A client that sends half a request and stalls.
  const sock = tcpConnect(port, '127.0.0.1')
  let answer = ''
  sock.setEncoding('utf8')
  sock.on('data', (c: string) => { answer += c })
  const closed = new Promise<void>(resolve => sock.once('close', () => resolve()))
  sock.on('error', () => {})
  sock.write(`POST /v1/tenants HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${api.adminToken}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"na`)
  await bounded(closed, 10_000, 'the stalled request to be cut off')
  assert.match(answer, /^HTTP\/1\.1 408/)
  // Over real HTTP (inject bypasses the server's timeouts): nothing consumes the console job, so the request
  // waits its full 3 s, past the 1 s timeout, and answers 202 with the job.
  const r = await fetch(`http://127.0.0.1:${port}/v1/servers/${server}/console?wait=3`, { method: 'POST', headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' }, body: '{}' })
  assert.equal(r.status, 202, await r.clone().text())
  assert.equal((await r.json() as { kind: string }).kind, 'console')
})
