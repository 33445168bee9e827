// The dashboard's guard on the real API and Redis: every /ops/api route (as fastify lists them, not a hand
// list) refuses no cookie, a session record naming a customer's key, and a change without its CSRF token or
// from another site; the /ops rate limit (RATE_LIMIT_OPS_SESSION); HEAD on the event streams answers at once;
// a logout ends that session's event streams on every replica, and no other session's.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { Agent, request } from 'node:http'
import { sha256Hex } from '@porthole/shared/crypto'
import { keys } from '@porthole/shared/store'
import { openSse, waitFor, within, type SseStream } from '@porthole/testkit'
import {
  OPS_ORIGIN, apiKey, assertLimited, kvmServer, listen, listenPort, opsCall, opsLogin, routesOf, secondReplica, startTestApi, tenantWithKey,
  type OpsLogin, type TestApi
} from './helpers.js'

/** A session record written straight into Redis (as a bug or a hand edit could), for a key of any role. */
async function forgedSession (api: TestApi, keyId: string, role: string): Promise<OpsLogin> {
  const token = randomBytes(32).toString('base64url')
  const csrf = randomBytes(32).toString('base64url')
  const now = Date.now()
  await api.redis.set(`${api.ns}:ops:session:${sha256Hex(token)}`, JSON.stringify({ keyId, role, csrf, createdAt: new Date(now).toISOString(), expiresAt: new Date(now + 3_600_000).toISOString() }), 'EX', 3600)
  return { cookie: `porthole_ops=${token}`, setCookie: '', csrf }
}

test('every /ops/api route refuses no cookie, a customer key\'s session, and a change without its CSRF token or from another site', async (t) => {
  const api = await startTestApi(t)
  const acme = await tenantWithKey(api)
  const operator = await apiKey(api, 'operator')
  const good = await opsLogin(api, operator.key)
  const customerSession = await forgedSession(api, acme.keyId, 'customer')
  const customerAsOperator = await forgedSession(api, acme.keyId, 'operator')
  const routes = routesOf(api.app).filter(r => r.url.startsWith('/ops/api/'))
  // Enough of them to know the listing worked: the page's data, its changes and its stream.
  for (const must of ['GET /ops/api/jobs', 'POST /ops/api/jobs/:id/retry', 'DELETE /ops/api/sessions/:id', 'GET /ops/api/events', 'HEAD /ops/api/events', 'POST /ops/api/logout']) {
    assert.ok(routes.some(r => `${r.method} ${r.url}` === must), `${must} among ${routes.map(r => `${r.method} ${r.url}`).join(', ')}`)
  }
  const changes = routes.filter(r => r.method !== 'GET' && r.method !== 'HEAD')
  assert.ok(changes.length >= 5, 'the change routes')
  for (const r of routes) {
    const url = r.url.replace(/:[a-zA-Z]+/g, randomUUID())
    const what = `${r.method} ${r.url}`
    const refused = async (s: OpsLogin | undefined, status: number, extra: Record<string, string> = {}, why = ''): Promise<void> => {
      const res = s === undefined ? await api.call(r.method, url, undefined, { key: null, headers: { origin: OPS_ORIGIN, ...extra } }) : await opsCall(api, s, r.method, url, undefined, extra)
      assert.equal(res.status, status, `${what} ${why}: ${res.status} ${res.raw.slice(0, 200)}`)
      if (r.method !== 'HEAD') assert.match(String(res.headers['content-type']), /^application\/problem\+json/, what)
    }
    await refused(undefined, 401, {}, 'without a cookie')
    await refused(undefined, 401, { authorization: `Bearer ${operator.key}` }, 'with a bearer key and no cookie')
    await refused(customerSession, 401, {}, 'with a session of a customer key')
    await refused(customerAsOperator, 401, {}, 'with a session naming a customer key as an operator')
    if (r.method === 'GET' || r.method === 'HEAD') continue
    // Changes: the good session's cookie alone is not enough.
    await refused(good, 403, { 'x-csrf-token': '' }, 'without the CSRF token')
    await refused(good, 403, { 'x-csrf-token': good.csrf.replace(/^./, c => c === 'a' ? 'b' : 'a') }, 'with a wrong CSRF token')
    await refused(good, 403, { origin: 'https://evil.example' }, 'from another site, token and all')
    await refused(good, 403, { 'x-csrf-token': '', origin: 'https://evil.example' }, 'from another site without the token')
  }
  // None of the refusals touched the good session (a cross-site logout included).
  assert.equal((await opsCall(api, good, 'GET', '/ops/api/session')).status, 200)
})

test('RATE_LIMIT_OPS_SESSION: per session on /ops/api and per address on the login, a 429 naming the limit with Retry-After', async (t) => {
  const api = await startTestApi(t, { env: { RATE_LIMIT_OPS_SESSION: '3', RATE_LIMIT_WINDOW_SECONDS: '60' } })
  const operator = await apiKey(api, 'operator')
  const s1 = await opsLogin(api, operator.key)
  for (let i = 0; i < 3; i++) assert.equal((await opsCall(api, s1, 'GET', '/ops/api/session')).status, 200)
  const over = await opsCall(api, s1, 'GET', '/ops/api/jobs')
  assertLimited(over, 'requests_per_ops_session', 60)
  assert.match(over.body.detail, /RATE_LIMIT_OPS_SESSION/)
  assert.match(over.body.detail, /this dashboard session made more than 3 requests in 60 s/)
  // Another session has its own count; the page and its scripts are not counted; /v1 keeps its own limit.
  const s2 = await opsLogin(api, operator.key)
  assert.equal((await opsCall(api, s2, 'GET', '/ops/api/session')).status, 200)
  assert.equal((await api.call('GET', '/ops', undefined, { key: null })).status, 200)
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: operator.key })).status, 200)
  // Logins from one address: two so far, a third, then refused before the key is looked at.
  await opsLogin(api, operator.key)
  const login = await api.call('POST', '/ops/login', { key: operator.key }, { key: null, headers: { origin: OPS_ORIGIN } })
  assertLimited(login, 'requests_per_ops_session', 60)
  assert.match(login.body.detail, /dashboard logins/)
  assert.equal(login.headers['set-cookie'], undefined)
  // Counted in Redis (every replica shares them), under the namespace.
  assert.ok((await api.redis.keys(`${keys(api.ns).requestRate}ops:*`)).length >= 2)
})

/** A HEAD, then a GET on the same keep-alive socket: the GET is answered only if the HEAD's answer ended. */
async function headThenGet (base: string, path: string, headers: Record<string, string>): Promise<{ head: { status: number, type: string }, get: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  try {
    const one = async (method: string, p: string): Promise<{ status: number, type: string }> => await new Promise((resolve, reject) => {
      const req = request(base + p, { method, agent, headers }, (res) => {
        res.resume()
        res.once('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']) }))
      })
      req.on('error', reject)
      req.end()
    })
    const head = await one('HEAD', path)
    return { head, get: (await one('GET', '/healthz')).status }
  } finally {
    agent.destroy()
  }
}

test('HEAD on /ops/api/events and /v1/events answers at once with the stream\'s headers, and opens no stream', async (t) => {
  const api = await startTestApi(t, { env: { EVENT_STREAMS_PER_KEY: '1' } })
  const acme = await tenantWithKey(api)
  const operator = await apiKey(api, 'operator')
  const s = await opsLogin(api, operator.key)
  const base = await listen(api)
  for (const [path, headers, keyId] of [['/ops/api/events', { cookie: s.cookie }, operator.id], ['/v1/events', { authorization: `Bearer ${acme.key}` }, acme.keyId]] as const) {
    const r = await within(headThenGet(base, path, headers), 30_000, `HEAD ${path} and a request after it on the same socket`)
    assert.equal(r.head.status, 200, path)
    assert.match(r.head.type, /^text\/event-stream/, path)
    assert.equal(r.get, 200, `the socket was free again after HEAD ${path}`)
    assert.equal(await api.redis.zcard(keys(api.ns).eventStreams(keyId)), 0, `HEAD ${path} took no stream slot`)
    // With one stream allowed per key, a real stream still opens after the HEADs.
    const stream = await openSse(base + path, null, { headers })
    t.after(() => { stream.close() })
    assert.equal(stream.status, 200, path)
  }
  assert.equal((await api.call('HEAD', '/ops/api/events', undefined, { key: null })).status, 401, 'a HEAD needs the session too')
})

async function opsStream (api: TestApi, base: string, s: OpsLogin): Promise<SseStream> {
  const stream = await openSse(`${base}/ops/api/events`, null, { headers: { cookie: s.cookie } })
  api.defer(async () => { stream.close() })
  assert.equal(stream.status, 200)
  await waitFor(() => stream.text().includes(': connected'), 30_000, 'the stream to open')
  return stream
}

test('a logout ends that session\'s event streams at once, on every replica; other sessions\' go on', async (t) => {
  // Heartbeats (which also notice an ended session) far apart: only the logout can end the streams here.
  const api = await startTestApi(t, { env: { SSE_HEARTBEAT_SECONDS: '300' } })
  const acme = await tenantWithKey(api)
  const serverId = await kvmServer(api, acme.tenantId)
  const operator = await apiKey(api, 'operator')
  const leaving = await opsLogin(api, operator.key)
  const staying = await opsLogin(api, operator.key)
  const { app: other } = await secondReplica(api)
  const here = await listen(api)
  const there = `http://127.0.0.1:${await listenPort(other)}`
  const mine = [await opsStream(api, here, leaving), await opsStream(api, there, leaving)]
  const kept = await opsStream(api, there, staying)
  const out = await opsCall(api, leaving, 'POST', '/ops/api/logout')
  assert.equal(out.status, 204, out.raw)
  await waitFor(() => mine.every(s => s.closed()), 30_000, 'the logged-out session\'s streams to end')
  for (const s of mine) assert.match(s.text(), /event: end\ndata: \{"reason":"ops-session.ended"\}/)
  assert.equal(kept.closed(), false)
  // The other session's stream is live: a job's event still reaches it.
  const job = (await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' }, { key: acme.key })).body
  await waitFor(() => kept.events.some(e => e.event === 'job' && e.data.jobId === job.id), 30_000, 'the job event on the session that stayed')
  assert.equal((await opsCall(api, leaving, 'GET', '/ops/api/session')).status, 401)
  assert.equal((await opsCall(api, staying, 'GET', '/ops/api/session')).status, 200)
  const audit = (await api.call('GET', '/v1/audit')).body as Array<{ action: string, actor: string }>
  assert.ok(audit.some(e => e.action === 'ops.logout' && e.actor === operator.id))
})
