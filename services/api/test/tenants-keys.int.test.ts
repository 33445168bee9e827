import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sha256Hex } from '@porthole/shared/crypto'
import { dumpNamespace, startTestApi } from './helpers.js'

test('tenants: admin creates and lists them', async (t) => {
  const api = await startTestApi(t)
  const r = await api.call('POST', '/v1/tenants', { name: 'acme' })
  assert.equal(r.status, 201)
  assert.equal(r.headers.location, `/v1/tenants/${r.body.id as string}`)
  const list = await api.call('GET', '/v1/tenants')
  assert.deepEqual(list.body, [r.body])
  assert.equal((await api.call('GET', `/v1/tenants/${r.body.id as string}`)).body.name, 'acme')
  assert.equal((await api.call('POST', '/v1/tenants', { name: '' })).body.field, 'name')
})

test('an API key is shown once, stored only hashed, works, and stops working when deleted', async (t) => {
  const api = await startTestApi(t)
  const tenant = (await api.call('POST', '/v1/tenants', { name: 'acme' })).body
  const created = await api.call('POST', '/v1/api-keys', { name: 'portal', role: 'customer', tenantId: tenant.id })
  assert.equal(created.status, 201)
  const { key, id } = created.body
  assert.match(key, /^ph_/)
  assert.equal(created.body.role, 'customer')
  assert.equal(created.body.tenantId, tenant.id)
  assert.equal(created.headers['cache-control'], 'no-store')

  const list = await api.call('GET', '/v1/api-keys')
  assert.equal(list.status, 200)
  assert.equal(list.body.length, 1)
  assert.equal(list.body[0].id, id)
  assert.ok(!list.raw.includes(key), 'the list never shows the key')
  assert.equal(list.body[0].key, undefined)

  const stored = await dumpNamespace(api.redis, api.ns)
  assert.ok(!stored.includes(key), 'Redis holds no plain key')
  assert.ok(stored.includes(sha256Hex(key)), 'Redis holds its SHA-256')

  assert.equal((await api.call('GET', '/v1/servers', undefined, { key })).status, 200)
  assert.equal((await api.call('DELETE', `/v1/api-keys/${id as string}`)).status, 204)
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key })).status, 401)
  assert.equal((await api.call('DELETE', `/v1/api-keys/${id as string}`)).status, 404)
  assert.ok(!api.logLines.join('\n').includes(key), 'the key never reaches a log')
})

test('a customer key needs an existing tenant; admin and operator keys have none', async (t) => {
  const api = await startTestApi(t)
  const noTenant = await api.call('POST', '/v1/api-keys', { name: 'c', role: 'customer' })
  assert.equal(noTenant.status, 400)
  assert.equal(noTenant.body.field, 'tenantId')
  const unknown = await api.call('POST', '/v1/api-keys', { name: 'c', role: 'customer', tenantId: crypto.randomUUID() })
  assert.equal(unknown.status, 400)
  assert.equal(unknown.body.field, 'tenantId')
  const tenant = (await api.call('POST', '/v1/tenants', { name: 'acme' })).body
  const op = await api.call('POST', '/v1/api-keys', { name: 'o', role: 'operator', tenantId: tenant.id })
  assert.equal(op.status, 400)
  const badRole = await api.call('POST', '/v1/api-keys', { name: 'o', role: 'root' })
  assert.equal(badRole.status, 400)
  assert.equal(badRole.body.field, 'role')
  assert.match(badRole.body.detail, /admin, operator, customer/)
  assert.equal((await api.call('GET', '/v1/api-keys')).body.length, 0)
})
