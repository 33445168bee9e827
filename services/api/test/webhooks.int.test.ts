import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WebhookStore, keys } from '@porthole/shared/store'
import { startWebhookReceiver, waitFor, within } from '@porthole/testkit'
import { createLogger } from '@porthole/shared/logging'
import { buildApp } from '../src/app.js'
import { loadApiConfig } from '../src/config.js'
import { connect } from '../src/service.js'
import { kvmServer, startTestApi, tenantWithKey, type TestApi } from './helpers.js'

const FAST_RETRIES = { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_FIRST_MS: '50', WEBHOOK_RETRY_MAX_MS: '200', WEBHOOK_TIMEOUT_SECONDS: '2' }

/** A power job of `serverId` moved to `succeeded` by the test, as the receiver and agent would. */
async function succeededJob (api: TestApi, serverId: string, key: string): Promise<string> {
  const r = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' }, { key })
  assert.equal(r.status, 202, r.raw)
  await api.jobs.transition(r.body.id, 'dispatched')
  await api.jobs.transition(r.body.id, 'running')
  await api.jobs.transition(r.body.id, 'succeeded', { result: { power: 'on', checkedAt: new Date().toISOString() } })
  return r.body.id as string
}

test('a webhook gets every event it asked for, signed; failures are retried with the same id until it answers 2xx', async (t) => {
  const api = await startTestApi(t, { env: FAST_RETRIES })
  const a = await tenantWithKey(api, 'a')
  const b = await tenantWithKey(api, 'b')
  const serverA = await kvmServer(api, a.tenantId, 'va')
  const serverB = await kvmServer(api, b.tenantId, 'vb')
  const rx = await startWebhookReceiver(t)
  const created = await api.call('POST', '/v1/webhooks', { url: rx.url, events: ['job.*'] }, { key: a.key })
  assert.equal(created.status, 201, created.raw)
  assert.match(created.body.secret, /^whsec_[A-Za-z0-9+/]{43}=$/)
  assert.equal(created.headers['cache-control'], 'no-store')
  rx.secret = created.body.secret
  // The first two attempts of each message fail (500, then a dropped connection is not needed: 503).
  const seen = new Map<string, number>()
  rx.answer = (w) => { const n = (seen.get(w.id) ?? 0) + 1; seen.set(w.id, n); return n === 1 ? 500 : n === 2 ? 503 : 204 }

  const jobA = await succeededJob(api, serverA, a.key)
  await succeededJob(api, serverB, b.key) // another tenant's: never delivered here
  await waitFor(() => rx.received.filter(w => w.answered === 204).length === 4, 10_000, 'four events delivered')
  assert.ok(rx.received.every(w => w.verified), 'every request carries a valid signature')
  assert.equal(rx.received.length, 12, 'three attempts of each of four events')
  const bodies = [...new Map(rx.received.map(w => [w.id, w.body])).values()]
  assert.deepEqual(bodies.map(b => b.type), ['job.queued', 'job.dispatched', 'job.running', 'job.succeeded'])
  for (const body of bodies) {
    assert.equal(body.data.jobId, jobA)
    assert.equal(body.data.tenantId, a.tenantId)
    assert.equal(body.timestamp, body.data.at)
  }
  for (const w of rx.received) assert.ok(Math.abs(w.timestamp - Date.now() / 1000) < 300, 'webhook-timestamp is unix seconds of now')

  const list = await api.call('GET', `/v1/webhooks/${created.body.id}/deliveries`, undefined, { key: a.key })
  assert.equal(list.status, 200)
  assert.equal(list.body.length, 4)
  for (const d of list.body) {
    assert.equal(d.outcome, 'delivered')
    assert.deepEqual(d.attempts.map((x: { status: number }) => x.status), [500, 503, 204])
    assert.equal(d.nextAttemptAt, undefined)
  }
  // The secret is shown once: never in a listing, a read, nor in Redis in clear.
  const read = await api.call('GET', `/v1/webhooks/${created.body.id}`, undefined, { key: a.key })
  const all = await api.call('GET', '/v1/webhooks', undefined, { key: a.key })
  assert.equal(all.body.length, 1)
  for (const r of [read, all]) assert.ok(!r.raw.includes(created.body.secret.slice(6, 20)) && !r.raw.includes('"secret"'))
  assert.ok(!api.logLines.join('\n').includes(created.body.secret.slice(6, 20)), 'not in a log line')
  // Another tenant cannot see it: a 404, as for a server.
  assert.equal((await api.call('GET', `/v1/webhooks/${created.body.id}/deliveries`, undefined, { key: b.key })).status, 404)
  assert.equal((await api.call('DELETE', `/v1/webhooks/${created.body.id}`, undefined, { key: b.key })).status, 404)
  assert.deepEqual((await api.call('GET', '/v1/webhooks', undefined, { key: b.key })).body, [])
})

test('an endpoint answering 410 is disabled: nothing more is sent to it', async (t) => {
  const api = await startTestApi(t, { env: FAST_RETRIES })
  const a = await tenantWithKey(api, 'a')
  const server = await kvmServer(api, a.tenantId, 'va')
  const gone = await startWebhookReceiver(t)
  const witness = await startWebhookReceiver(t)
  gone.answer = () => 410
  const g = await api.call('POST', '/v1/webhooks', { url: gone.url, events: ['job.succeeded'] }, { key: a.key })
  const w = await api.call('POST', '/v1/webhooks', { url: witness.url, events: ['job.succeeded'] }, { key: a.key })
  gone.secret = g.body.secret
  witness.secret = w.body.secret

  await succeededJob(api, server, a.key)
  await waitFor(async () => (await api.call('GET', `/v1/webhooks/${g.body.id}`, undefined, { key: a.key })).body.disabledAt, 10_000, 'the webhook to be disabled')
  assert.equal(gone.received.length, 1)
  const [first] = (await api.call('GET', `/v1/webhooks/${g.body.id}/deliveries`, undefined, { key: a.key })).body
  assert.equal(first.outcome, 'cancelled')
  assert.deepEqual(first.attempts.map((x: { status: number }) => x.status), [410])

  // Two more events: the witness (its deliveries are made in the same step) gets them; the gone one nothing.
  await succeededJob(api, server, a.key)
  await succeededJob(api, server, a.key)
  await waitFor(() => witness.received.length === 3, 10_000, 'the witness to get all three')
  assert.ok(witness.received.every(x => x.verified))
  assert.equal(gone.received.length, 1, 'nothing more after 410')
  assert.equal((await api.call('GET', `/v1/webhooks/${g.body.id}/deliveries`, undefined, { key: a.key })).body.length, 1)
  const disabled = (await api.call('GET', '/v1/webhooks', undefined, { key: a.key })).body.find((x: { id: string }) => x.id === g.body.id)
  assert.match(disabled.disabledReason, /410/)

  // Deleting a webhook: gone from the listing, 404 after.
  assert.equal((await api.call('DELETE', `/v1/webhooks/${w.body.id}`, undefined, { key: a.key })).status, 204)
  assert.equal((await api.call('GET', `/v1/webhooks/${w.body.id}`, undefined, { key: a.key })).status, 404)
})

test('a delivery that keeps failing is retried with growing waits and given up after WEBHOOK_RETRY_FOR_SECONDS', async (t) => {
  const api = await startTestApi(t, { env: { ...FAST_RETRIES, WEBHOOK_RETRY_FOR_SECONDS: '1', WEBHOOK_RETRY_FIRST_MS: '100', WEBHOOK_RETRY_MAX_MS: '400' } })
  const a = await tenantWithKey(api, 'a')
  const server = await kvmServer(api, a.tenantId, 'va')
  const rx = await startWebhookReceiver(t)
  rx.answer = () => 500
  const h = await api.call('POST', '/v1/webhooks', { url: rx.url, events: ['job.succeeded'] }, { key: a.key })
  rx.secret = h.body.secret
  await succeededJob(api, server, a.key)
  const d = await waitFor(async () => {
    const [x] = (await api.call('GET', `/v1/webhooks/${h.body.id}/deliveries`, undefined, { key: a.key })).body
    return x?.outcome === 'failed' ? x : undefined
  }, 15_000, 'the delivery to be given up')
  assert.ok(d.attempts.length >= 3, `several attempts (${d.attempts.length})`)
  assert.equal(rx.received.length, d.attempts.length)
  const gaps = d.attempts.slice(1).map((x: { at: string }, i: number) => Date.parse(x.at) - Date.parse(d.attempts[i].at))
  // Each wait is at least the backoff it was scheduled with (100, 200, 400 … ms, capped at 400).
  gaps.forEach((g: number, i: number) => assert.ok(g >= Math.min(100 * 2 ** i, 400), `wait ${i + 1} was ${g} ms`))
})

test('webhook URLs on loopback, link-local, private or metadata addresses are refused as problems', async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'a')
  for (const url of [
    'http://127.0.0.1:8080/x', 'http://localhost/x', 'http://169.254.169.254/latest/meta-data/', 'http://[::1]/x', 'http://10.1.2.3/x',
    'http://192.168.1.1/x', 'http://172.16.0.1/', 'http://100.100.100.200/', 'http://[::ffff:127.0.0.1]/x', 'http://[fd00:ec2::254]/', 'http://0.0.0.0/',
    'http://2130706433/', 'http://0x7f.1/'
  ]) {
    const r = await api.call('POST', '/v1/webhooks', { url }, { key: a.key })
    assert.equal(r.status, 400, `${url}: ${r.raw}`)
    assert.match(String(r.headers['content-type']), /application\/problem\+json/)
    assert.match(r.body.detail, /public addresses only/, url)
  }
  for (const [url, why] of [['ftp://example.com/x', /http and https/], ['http://u:p@example.com/', /credentials/], ['not a url', /absolute URL/], ['http://no-such-host.invalid/', /does not resolve/]] as const) {
    const r = await api.call('POST', '/v1/webhooks', { url }, { key: a.key })
    assert.equal(r.status, 400, r.raw)
    assert.match(r.body.detail, why)
  }
  assert.equal((await api.call('POST', '/v1/webhooks', { url: 'http://example.com/', events: ['job.nope'] }, { key: a.key })).status, 400)
  // Admins name the tenant; a customer cannot name another.
  assert.equal((await api.call('POST', '/v1/webhooks', { url: 'http://127.0.0.1/' })).status, 400)
  assert.deepEqual((await api.call('GET', '/v1/webhooks', undefined, { key: a.key })).body, [])
})

test('a delivery checks the address again: a webhook whose host now resolves to loopback gets nothing', async (t) => {
  // As if the registered name had been re-pointed (DNS rebinding) at a loopback service after registration.
  const api = await startTestApi(t, { env: { WEBHOOK_RETRY_FIRST_MS: '50', WEBHOOK_RETRY_MAX_MS: '100' } })
  const a = await tenantWithKey(api, 'a')
  const server = await kvmServer(api, a.tenantId, 'va')
  const inside = await startWebhookReceiver(t)
  const created = await api.call('POST', '/v1/webhooks', { url: 'http://93.184.215.14/hook', events: ['job.queued'] }, { key: a.key })
  assert.equal(created.status, 201, created.raw)
  const key = keys(api.ns).webhook(created.body.id)
  const stored = JSON.parse(await api.redis.get(key) ?? '{}')
  await api.redis.set(key, JSON.stringify({ ...stored, url: inside.url }))

  const r = await api.call('POST', `/v1/servers/${server}/power`, { action: 'on' }, { key: a.key })
  assert.equal(r.status, 202)
  const d = await waitFor(async () => {
    const [x] = (await api.call('GET', `/v1/webhooks/${created.body.id}/deliveries`, undefined, { key: a.key })).body
    return x?.attempts.length >= 2 ? x : undefined
  }, 10_000, 'two refused attempts')
  for (const attempt of d.attempts) {
    assert.equal(attempt.status, undefined)
    assert.match(attempt.error, /127\.0\.0\.1.*public addresses only/)
  }
  assert.equal(inside.received.length, 0, 'nothing reached the loopback endpoint')
})

test('two API replicas share the deliveries: every event reaches the endpoint once', async (t) => {
  const api = await startTestApi(t, { env: FAST_RETRIES })
  // A second replica on the same namespace, with its own connections and its own deliverer.
  const config = loadApiConfig({
    RABBITMQ_URL: api.svc.rabbitmqUrl, REDIS_URL: api.svc.redisUrl, PORTHOLE_NAMESPACE: api.ns, PORTHOLE_SECRET_KEY: api.secretKey,
    CONSOLE_TRANSIT_KEY: api.transitKey, LOG_LEVEL: 'silent', ...FAST_RETRIES
  })
  const deps = connect(config, createLogger({ name: 'api-2', level: 'silent' }))
  const second = await buildApp(deps)
  api.defer(async () => { await second.close(); await deps.close() })
  await second.ready()
  const a = await tenantWithKey(api, 'a')
  const server = await kvmServer(api, a.tenantId, 'va')
  const rx = await startWebhookReceiver(t)
  const h = await api.call('POST', '/v1/webhooks', { url: rx.url, events: ['job.queued'] }, { key: a.key })
  rx.secret = h.body.secret
  const N = 30
  await Promise.all(Array.from({ length: N }, async () => {
    const r = await api.call('POST', `/v1/servers/${server}/power`, { action: 'on' }, { key: a.key })
    assert.equal(r.status, 202, r.raw)
  }))
  await waitFor(() => new Set(rx.received.map(w => w.id)).size === N, 15_000, `${N} deliveries`)
  assert.equal(rx.received.length, N, 'no delivery made twice')
  assert.ok(rx.received.every(w => w.verified))
  // Both replicas' attempts together are exactly one per event.
  const attempts = async (app: { inject: (o: { url: string }) => Promise<{ body: string }> }): Promise<number> =>
    Number(/^porthole_webhook_attempt_duration_seconds_count\{status="200"\} (\d+)$/m.exec((await app.inject({ url: '/metrics' })).body)?.[1] ?? 0)
  assert.equal(await attempts(api.app) + await attempts(second), N)
})

test('stopping a replica ends its hanging attempts at once: recorded as failed, left for a retry', async (t) => {
  const api = await startTestApi(t, { env: { ...FAST_RETRIES, WEBHOOK_TIMEOUT_SECONDS: '120', WEBHOOK_RETRY_FIRST_MS: '600000' } })
  const a = await tenantWithKey(api, 'a')
  const server = await kvmServer(api, a.tenantId, 'va')
  const rx = await startWebhookReceiver(t)
  rx.answer = () => 'hang'
  const h = await api.call('POST', '/v1/webhooks', { url: rx.url, events: ['job.queued'] }, { key: a.key })
  rx.secret = h.body.secret
  assert.equal((await api.call('POST', `/v1/servers/${server}/power`, { action: 'on' }, { key: a.key })).status, 202)
  await waitFor(() => rx.hanging() === 1, 10_000, 'the attempt to hang')
  // Far sooner than the attempt's own 120 s limit.
  await within(api.app.close(), 30_000, 'the app to close')
  const [d] = await new WebhookStore(api.redis, api.ns).deliveries(h.body.id)
  assert.equal(d?.outcome, 'pending')
  assert.equal(d?.attempts.length, 1)
  assert.match(d?.attempts[0]?.error ?? '', /abort|stopped/i)
})
