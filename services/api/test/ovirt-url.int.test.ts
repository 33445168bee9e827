import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { StoredOvirtServer } from '@porthole/contracts'
import { ServerStore } from '@porthole/shared/store'
import { startTestApi } from './helpers.js'

const connection = (url: string): Record<string, string> => ({ url, username: 'admin@internal', password: 'engine-Pw-1', vmId: 'vm-1' })

test('an oVirt URL with /api or a trailing slash is stored as the engine\'s base, on create and on PATCH', async (t) => {
  const api = await startTestApi(t)
  const tenantId = (await api.call('POST', '/v1/tenants', { name: 'acme' })).body.id as string
  const store = new ServerStore(api.redis, api.ns)
  const created = await api.call('POST', '/v1/servers', { name: 'app-1', tenantId, agent: 'ovirt', connection: connection('https://engine.example/ovirt-engine/api/') })
  assert.equal(created.status, 201, created.raw)
  assert.equal(created.body.connection.url, 'https://engine.example/ovirt-engine')
  const id = created.body.id as string
  assert.equal((await store.get(id) as StoredOvirtServer | undefined)?.connection.url, 'https://engine.example/ovirt-engine')
  // The same engine written the other way is no new destination: the stored password stays without a 422.
  const respelled = await api.call('PATCH', `/v1/servers/${id}`, { connection: { url: 'https://engine.example/ovirt-engine/api' } })
  assert.equal(respelled.status, 200, respelled.raw)
  assert.equal(respelled.body.connection.url, 'https://engine.example/ovirt-engine')
  // Another engine is: the password must come along.
  const patched = await api.call('PATCH', `/v1/servers/${id}`, { connection: { url: 'https://engine2.example/ovirt-engine/api', password: 'engine-pw-2' } })
  assert.equal(patched.status, 200, patched.raw)
  assert.equal(patched.body.connection.url, 'https://engine2.example/ovirt-engine')
  assert.equal((await store.get(id) as StoredOvirtServer | undefined)?.connection.url, 'https://engine2.example/ovirt-engine')
})

test('an oVirt URL that is not an engine\'s is a 400 naming connection.url, on create and on PATCH, and changes nothing', async (t) => {
  const api = await startTestApi(t)
  const tenantId = (await api.call('POST', '/v1/tenants', { name: 'acme' })).body.id as string
  const bad = [
    'http://engine.example/ovirt-engine',
    'https://admin:pw@engine.example/ovirt-engine',
    'https://engine.example/ovirt-engine/api?all_content=true',
    'https://engine.example/ovirt-engine#x',
    'https://engine.example/',
    'https://engine.example/ovirt-engine/api/api'
  ]
  for (const url of bad) {
    const r = await api.call('POST', '/v1/servers', { name: 'app-1', tenantId, agent: 'ovirt', connection: connection(url) })
    assert.equal(r.status, 400, `${url}: ${r.raw}`)
    assert.match(String(r.headers['content-type']), /^application\/problem\+json/)
    assert.equal(r.body.field, 'connection.url', r.raw)
    assert.ok(String(r.body.detail).includes('connection.url'), r.raw)
    assert.ok(!r.raw.includes('engine-Pw-1') && !r.raw.includes(':pw@'), 'no password in the problem')
  }
  assert.deepEqual((await api.call('GET', '/v1/servers')).body, [], 'nothing was stored')

  const ok = await api.call('POST', '/v1/servers', { name: 'app-1', tenantId, agent: 'ovirt', connection: connection('https://engine.example/ovirt-engine') })
  const id = ok.body.id as string
  for (const url of bad) {
    const r = await api.call('PATCH', `/v1/servers/${id}`, { connection: { url } })
    assert.equal(r.status, 400, `${url}: ${r.raw}`)
    assert.equal(r.body.field, 'connection.url', r.raw)
  }
  assert.equal((await new ServerStore(api.redis, api.ns).get(id) as StoredOvirtServer | undefined)?.connection.url, 'https://engine.example/ovirt-engine', 'the stored URL is unchanged')
})
