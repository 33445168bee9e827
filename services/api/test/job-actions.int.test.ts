// POST /v1/jobs/{id}/retry and /cancel on the real API, RabbitMQ and Redis (no receiver: jobs stay queued
// until the test moves them).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { waitFor } from '@porthole/testkit'
import { consumeJobs, kvmServer, opsCall, opsLogin, startTestApi, tenantWithKey } from './helpers.js'

test('a queued job is cancelled once: it ends cancelled, is audited, and a second cancel is a 409', async (t) => {
  const api = await startTestApi(t)
  const acme = await tenantWithKey(api, 'acme')
  const other = await tenantWithKey(api, 'other')
  const serverId = await kvmServer(api, acme.tenantId)
  const job = (await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'off' }, { key: acme.key })).body
  assert.equal((await api.call('POST', `/v1/jobs/${job.id as string}/cancel`, undefined, { key: other.key })).status, 404, "another tenant's job is a 404")
  const r = await api.call('POST', `/v1/jobs/${job.id as string}/cancel`, undefined, { key: acme.key })
  assert.equal(r.status, 200, r.raw)
  assert.equal(r.body.state, 'cancelled')
  assert.deepEqual(r.body.history.map((h: { state: string }) => h.state), ['queued', 'cancelled'])
  const again = await api.call('POST', `/v1/jobs/${job.id as string}/cancel`, undefined, { key: acme.key })
  assert.equal(again.status, 409)
  assert.match(String(again.headers['content-type']), /^application\/problem\+json/)
  assert.match(again.body.detail, /only a queued job can be cancelled; job \S+ is cancelled/)
  const audit = (await api.call('GET', `/v1/audit?serverId=${serverId}`)).body as Array<{ action: string, jobId?: string }>
  assert.ok(audit.some(e => e.action === 'job.power.cancel' && e.jobId === job.id), JSON.stringify(audit))
  assert.equal((await api.call('GET', `/v1/jobs?state=cancelled&serverId=${serverId}`)).body.length, 1, 'listed by its state')
})

test('a job already dispatched, running or ended is not cancelled', async (t) => {
  const api = await startTestApi(t)
  const acme = await tenantWithKey(api)
  const serverId = await kvmServer(api, acme.tenantId)
  for (const state of ['dispatched', 'running', 'succeeded'] as const) {
    const job = (await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' })).body
    assert.equal((await api.jobs.transition(job.id, state)).status, 'ok')
    const r = await api.call('POST', `/v1/jobs/${job.id as string}/cancel`)
    assert.equal(r.status, 409, `${state}: ${r.raw}`)
    assert.equal((await api.jobs.get(job.id))?.state, state, 'left as it was')
  }
  assert.equal((await api.call('POST', `/v1/jobs/${randomUUID()}/cancel`)).status, 404)
})

test('a failed job is retried as a new job linked by retryOf, published like any other; only failed or timed-out ones', async (t) => {
  const api = await startTestApi(t)
  const acme = await tenantWithKey(api, 'acme')
  const other = await tenantWithKey(api, 'other')
  const serverId = await kvmServer(api, acme.tenantId)
  const seen = await consumeJobs(api)
  const old = (await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'reset' }, { key: acme.key })).body
  const queued = await api.call('POST', `/v1/jobs/${old.id as string}/retry`, undefined, { key: acme.key })
  assert.equal(queued.status, 409, 'a queued job is not retried')
  assert.match(queued.body.detail, /only a failed or timed-out job can be retried/)
  await api.jobs.transition(old.id, 'failed', { error: { code: 'connection', message: 'libvirt went away', retryable: true } })
  assert.equal((await api.call('POST', `/v1/jobs/${old.id as string}/retry`, undefined, { key: other.key })).status, 404)
  const r = await api.call('POST', `/v1/jobs/${old.id as string}/retry`, undefined, { key: acme.key })
  assert.equal(r.status, 201, r.raw)
  assert.equal(r.headers.location, `/v1/jobs/${r.body.id as string}`)
  assert.notEqual(r.body.id, old.id)
  assert.equal(r.body.retryOf, old.id)
  assert.equal(r.body.action, 'reset')
  assert.equal(r.body.state, 'queued')
  assert.equal((await api.call('GET', `/v1/jobs/${r.body.id as string}`, undefined, { key: acme.key })).body.retryOf, old.id)
  await waitFor(() => seen.some(m => (m as { id: string }).id === r.body.id), 5000, 'the retry published')
  const msg = seen.find(m => (m as { id: string }).id === r.body.id) as { retryOf?: string, action?: string }
  assert.equal(msg.retryOf, old.id)
  assert.equal(msg.action, 'reset')
  assert.equal((await api.jobs.get(old.id))?.state, 'failed', 'the old job keeps its record')

  const timedOut = (await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' })).body
  await api.jobs.transition(timedOut.id, 'timed_out')
  assert.equal((await api.call('POST', `/v1/jobs/${timedOut.id as string}/retry`)).status, 201)
})

test('a console job is not retried: 422 saying to ask for a new console', async (t) => {
  const api = await startTestApi(t)
  const acme = await tenantWithKey(api)
  const serverId = await kvmServer(api, acme.tenantId)
  const c = await api.call('POST', `/v1/servers/${serverId}/console?wait=0`, {}, { key: acme.key })
  assert.equal(c.status, 202, c.raw)
  await api.jobs.transition(c.body.id, 'failed', { error: { code: 'conflict', message: 'off', retryable: false } })
  const r = await api.call('POST', `/v1/jobs/${c.body.id as string}/retry`, undefined, { key: acme.key })
  assert.equal(r.status, 422, r.raw)
  assert.match(r.body.detail, /ask for a new console/)
})

test('retries that race (API and dashboard, two callers) make one new job; a later retry answers it; its own retry is new', async (t) => {
  const api = await startTestApi(t)
  const acme = await tenantWithKey(api)
  const serverId = await kvmServer(api, acme.tenantId)
  const seen = await consumeJobs(api)
  const old = (await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'reboot' }, { key: acme.key })).body
  await api.jobs.transition(old.id, 'failed', { error: { code: 'connection', message: 'libvirt went away', retryable: true } })
  const s = await opsLogin(api, api.adminToken)
  const url = `/v1/jobs/${old.id as string}/retry`
  const answers = await Promise.all([
    api.call('POST', url, undefined, { key: acme.key }),
    api.call('POST', url),
    api.call('POST', url, undefined, { key: acme.key }),
    opsCall(api, s, 'POST', `/ops/api/jobs/${old.id as string}/retry`),
    opsCall(api, s, 'POST', `/ops/api/jobs/${old.id as string}/retry`)
  ])
  for (const r of answers) assert.ok(r.status === 200 || r.status === 201, r.raw)
  assert.deepEqual(answers.map(r => r.status).filter(x => x === 201), [201], 'one retry made the job, the others were answered with it')
  const ids = new Set(answers.map(r => r.body.id as string))
  assert.equal(ids.size, 1, `one new job: ${[...ids].join(', ')}`)
  const retry = [...ids][0] as string
  const later = await api.call('POST', url, undefined, { key: acme.key })
  assert.equal(later.status, 200)
  assert.equal(later.body.id, retry)
  const listed = (await api.call('GET', `/v1/jobs?serverId=${serverId}`)).body as Array<{ id: string, retryOf?: string }>
  assert.deepEqual(listed.filter(j => j.retryOf === old.id).map(j => j.id), [retry], 'one job retries the old one')
  await waitFor(() => seen.some(m => (m as { id: string }).id === retry), 5000, 'the retry published')
  assert.equal(seen.filter(m => (m as { retryOf?: string }).retryOf === old.id).length, 1, 'published once')
  // The retry failed too: retrying it is a new job of its own.
  await api.jobs.transition(retry, 'failed', { error: { code: 'connection', message: 'still away', retryable: true } })
  const again = await api.call('POST', `/v1/jobs/${retry}/retry`, undefined, { key: acme.key })
  assert.equal(again.status, 201, again.raw)
  assert.equal(again.body.retryOf, retry)
})
