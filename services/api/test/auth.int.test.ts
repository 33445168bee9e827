import { test } from 'node:test'
import assert from 'node:assert/strict'
import { kvmServer, startTestApi, tenantWithKey, twoTenants } from './helpers.js'

test('a missing or unknown key is a 401 problem with WWW-Authenticate: Bearer', async (t) => {
  const api = await startTestApi(t)
  for (const key of [null, 'ph_not-a-key', `${api.adminToken}x`]) {
    const r = await api.call('GET', '/v1/servers', undefined, { key })
    assert.equal(r.status, 401)
    assert.equal(r.headers['www-authenticate'], 'Bearer')
    assert.match(String(r.headers['content-type']), /^application\/problem\+json/)
    assert.equal(r.body.status, 401)
    assert.equal(r.body.code, 'unauthorized')
  }
  const basic = await api.call('GET', '/v1/servers', undefined, { key: null, headers: { authorization: `Basic ${api.adminToken}` } })
  assert.equal(basic.status, 401)
})

test('roles: customers cannot administer, operators cannot make keys or tenants', async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'a')
  const op = await api.call('POST', '/v1/api-keys', { name: 'ops', role: 'operator' })
  assert.equal(op.status, 201)
  assert.equal((await api.call('POST', '/v1/tenants', { name: 'x' }, { key: a.key })).status, 403)
  assert.equal((await api.call('GET', '/v1/tenants', undefined, { key: op.body.key })).status, 403)
  assert.equal((await api.call('POST', '/v1/api-keys', { name: 'y', role: 'admin' }, { key: op.body.key })).status, 403)
  assert.equal((await api.call('POST', '/v1/servers', { name: 's', tenantId: a.tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: 's' } }, { key: a.key })).status, 403)
  // operators manage servers of every tenant
  const sid = await kvmServer(api, a.tenantId)
  const patched = await api.call('PATCH', `/v1/servers/${sid}`, { name: 'renamed' }, { key: op.body.key })
  assert.equal(patched.status, 200)
  assert.equal(patched.body.name, 'renamed')
  // a customer reads its own server but cannot change it
  assert.equal((await api.call('GET', `/v1/servers/${sid}`, undefined, { key: a.key })).status, 200)
  assert.equal((await api.call('PATCH', `/v1/servers/${sid}`, { name: 'mine' }, { key: a.key })).status, 403)
  assert.equal((await api.call('DELETE', `/v1/servers/${sid}`, undefined, { key: a.key })).status, 403)
})

test("another tenant's server, job and list entries are invisible: 404, never 403", async (t) => {
  const api = await startTestApi(t)
  const { a, b, sa, sb } = await twoTenants(api)
  const job = await api.call('POST', `/v1/servers/${sb}/power`, { action: 'on' }, { key: b.key })
  assert.equal(job.status, 202)

  const list = await api.call('GET', '/v1/servers', undefined, { key: a.key })
  assert.deepEqual(list.body.map((s: { id: string }) => s.id), [sa])
  assert.deepEqual((await api.call('GET', `/v1/servers?tenantId=${b.tenantId}`, undefined, { key: a.key })).body, [])
  const checks: Array<[string, string, unknown]> = [
    ['GET', `/v1/servers/${sb}`, undefined],
    ['PATCH', `/v1/servers/${sb}`, { name: 'x' }],
    ['DELETE', `/v1/servers/${sb}`, undefined],
    ['POST', `/v1/servers/${sb}/power`, { action: 'off' }],
    ['GET', `/v1/servers/${sb}/status?wait=0`, undefined],
    ['POST', `/v1/servers/${sb}/console?wait=0`, {}],
    ['GET', `/v1/jobs/${job.body.id as string}`, undefined]
  ]
  for (const [method, url, body] of checks) {
    const r = await api.call(method, url, body, { key: a.key })
    assert.equal(r.status, 404, `${method} ${url}`)
    assert.equal(r.body.code, 'not_found')
  }
  assert.deepEqual((await api.call('GET', '/v1/jobs', undefined, { key: a.key })).body, [])
  assert.equal((await api.call('GET', '/v1/jobs', undefined, { key: b.key })).body.length, 1)
  // the other tenant's server still exists, untouched
  assert.equal((await api.call('GET', `/v1/servers/${sb}`)).body.name, 'vb')
})
