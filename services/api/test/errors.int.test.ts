import { test } from 'node:test'
import assert from 'node:assert/strict'
import { kvmServer, startTestApi, tenantWithKey, type Reply } from './helpers.js'

function assertProblem (r: Reply, status: number): void {
  assert.equal(r.status, status, r.raw)
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/)
  for (const k of ['type', 'title', 'detail', 'code']) assert.equal(typeof r.body[k], 'string', k)
  assert.equal(r.body.status, status)
  assert.match(r.body.type, /^urn:porthole:problem:/)
  assert.ok(!/\bat .*\.js:\d+/.test(r.raw) && !r.raw.includes('"stack"'), 'no stack trace')
}

test("fastify's own errors are problem+json too", async (t) => {
  const api = await startTestApi(t, { env: { BODY_LIMIT_BYTES: '2048' } })
  const { tenantId } = await tenantWithKey(api)
  const sid = await kvmServer(api, tenantId)
  assertProblem(await api.call('POST', `/v1/servers/${sid}/power`, undefined, { headers: { 'content-type': 'application/json' }, payload: '{"action": "on"' }), 400)
  assertProblem(await api.call('POST', '/v1/tenants', undefined, { headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ name: 'x'.repeat(4096) }) }), 413)
  assertProblem(await api.call('POST', '/v1/tenants', undefined, { headers: { 'content-type': 'text/plain' }, payload: 'name=x' }), 415)
  assertProblem(await api.call('GET', '/v1/nothing-here'), 404)
  assertProblem(await api.call('GET', '/nothing-here', undefined, { key: null }), 404)
  const v = await api.call('POST', '/v1/tenants', { name: 'a', extra: true })
  assertProblem(v, 400)
  assert.equal(v.body.field, 'extra')
  assertProblem(await api.call('GET', '/v1/servers', undefined, { key: null }), 401)
  assertProblem(await api.call('GET', `/v1/servers/${crypto.randomUUID()}`), 404)
  // The router's own refusals: a malformed %-escape, a path parameter longer than it takes.
  assertProblem(await api.call('GET', '/v1/servers/%zz'), 400)
  assertProblem(await api.call('GET', `/v1/servers/${'a'.repeat(500)}`), 414)
})

test('logs carry no query strings and no Authorization header', async (t) => {
  const api = await startTestApi(t)
  await api.call('GET', '/v1/servers?tenantId=11111111-2222-4333-8444-555555555555')
  await api.call('GET', '/v1/jobs?limit=7')
  const logs = api.logLines.join('\n')
  assert.ok(logs.includes('"url":"/v1/servers"'), 'request URLs are logged')
  assert.ok(!logs.includes('tenantId=') && !logs.includes('limit=7'), 'without their query strings')
  assert.ok(!logs.includes(api.adminToken), 'never the key')
})
