import { test } from 'node:test'
import assert from 'node:assert/strict'
import { consumeJobs, kvmServer, startTestApi, tenantWithKey } from './helpers.js'

const ROUTES: Array<[string, string]> = [
  ['post', '/v1/tenants'], ['get', '/v1/tenants'], ['get', '/v1/tenants/{id}'],
  ['post', '/v1/api-keys'], ['get', '/v1/api-keys'], ['delete', '/v1/api-keys/{id}'],
  ['post', '/v1/servers'], ['get', '/v1/servers'], ['get', '/v1/servers/{id}'], ['patch', '/v1/servers/{id}'], ['delete', '/v1/servers/{id}'],
  ['post', '/v1/servers/{id}/power'], ['get', '/v1/servers/{id}/status'], ['post', '/v1/servers/{id}/console'],
  ['get', '/v1/console-sessions'], ['get', '/v1/console-sessions/{id}'], ['delete', '/v1/console-sessions/{id}'],
  ['get', '/v1/jobs/{id}'], ['get', '/v1/jobs'], ['get', '/v1/events'], ['get', '/v1/audit'],
  ['get', '/healthz'], ['get', '/readyz'], ['get', '/metrics'], ['get', '/openapi.json']
]

test('healthz and readyz', async (t) => {
  const api = await startTestApi(t)
  assert.deepEqual((await api.call('GET', '/healthz', undefined, { key: null })).body, { status: 'ok' })
  const r = await api.call('GET', '/readyz', undefined, { key: null })
  assert.equal(r.status, 200)
  assert.deepEqual(r.body, { status: 'ready', checks: { broker: true, redis: true, events: true } })
})

test('/openapi.json is an OpenAPI 3.1 document listing every route with its schemas; /docs is served locally', async (t) => {
  const api = await startTestApi(t)
  const r = await api.call('GET', '/openapi.json', undefined, { key: null })
  assert.equal(r.status, 200)
  const doc = r.body
  assert.equal(doc.openapi, '3.1.0')
  for (const [method, path] of ROUTES) {
    const op = doc.paths?.[path]?.[method]
    assert.ok(op !== undefined, `${method.toUpperCase()} ${path} is documented`)
    assert.ok(Object.keys(op.responses ?? {}).length > 0, `${method} ${path} has responses`)
  }
  const power = doc.paths['/v1/servers/{id}/power'].post
  assert.ok(power.requestBody.content['application/json'].schema.properties.action)
  assert.ok(power.parameters.some((p: { name: string }) => p.name === 'wait'))
  assert.ok(power.parameters.some((p: { name: string }) => p.name === 'idempotency-key'))
  assert.ok(doc.paths['/v1/servers'].post.responses['400'])
  assert.deepEqual(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer', description: 'an API key' })

  const page = await api.app.inject({ method: 'GET', url: '/docs/' })
  assert.equal(page.statusCode, 200)
  assert.match(page.body, /swagger/i)
  assert.ok(!/(src|href)=["']https?:/.test(page.body), 'no CDN')
  const bundle = await api.app.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' })
  assert.equal(bundle.statusCode, 200)
})

test('/metrics exposes request, job, queue and console metrics', async (t) => {
  const api = await startTestApi(t)
  const { tenantId } = await tenantWithKey(api)
  const sid = await kvmServer(api, tenantId)
  await consumeJobs(api)
  await api.call('POST', `/v1/servers/${sid}/power`, { action: 'on' })
  const r = await api.app.inject({ method: 'GET', url: '/metrics' })
  assert.equal(r.statusCode, 200)
  assert.match(String(r.headers['content-type']), /^text\/plain/)
  const m = r.body
  assert.match(m, /porthole_http_request_duration_seconds_count\{method="POST",route="\/v1\/servers\/:id\/power",status_code="202"\} 1/)
  assert.match(m, /porthole_jobs_created_total\{kind="power"\} 1/)
  assert.match(m, new RegExp(`porthole_queue_consumers\\{queue="${api.ns}\\.jobs\\.receiver"\\} 1`))
  assert.match(m, new RegExp(`porthole_queue_messages\\{queue="${api.ns}\\.agent\\.kvm"\\} 0`))
  assert.match(m, /porthole_console_sessions_live 0/)
  assert.match(m, /porthole_broker_connected 1/)
})
