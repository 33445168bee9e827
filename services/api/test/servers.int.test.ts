import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SecretBox, openServerSecrets } from '@porthole/shared/crypto'
import type { StoredServer } from '@porthole/contracts'
import { ServerStore } from '@porthole/shared/store'
import { dumpNamespace, startTestApi, type Reply } from './helpers.js'

const BMC_PASSWORD = 'bmc-Secr3t-pw!'
const VNC_PASSWORD = 'vncPw9x'

test('servers CRUD: passwords are sealed at rest and masked in every response', async (t) => {
  const api = await startTestApi(t)
  const tenant = (await api.call('POST', '/v1/tenants', { name: 'acme' })).body
  const responses: string[] = []
  const call = async (...a: Parameters<typeof api.call>): Promise<Reply> => { const r = await api.call(...a); responses.push(r.raw); return r }

  const created = await call('POST', '/v1/servers', {
    name: 'bmc1', tenantId: tenant.id, agent: 'ipmi',
    connection: { host: '10.1.2.3', port: 623, username: 'admin', password: BMC_PASSWORD },
    console: { host: '10.1.2.3', port: 5901, password: VNC_PASSWORD }
  })
  assert.equal(created.status, 201)
  const id = created.body.id as string
  assert.equal(created.headers.location, `/v1/servers/${id}`)
  assert.deepEqual(created.body.connection, { host: '10.1.2.3', port: 623, username: 'admin', password: '******' })
  assert.deepEqual(created.body.console, { host: '10.1.2.3', port: 5901, password: '******' })

  assert.equal((await call('GET', `/v1/servers/${id}`)).body.connection.password, '******')
  assert.equal((await call('GET', '/v1/servers')).body.length, 1)
  assert.equal((await call('GET', `/v1/servers?tenantId=${tenant.id as string}`)).body.length, 1)
  assert.equal((await call('GET', `/v1/servers?tenantId=${crypto.randomUUID()}`)).body.length, 0)

  // PATCH: connection members merge; the mask keeps the stored password while it goes where it went
  const renamed = await call('PATCH', `/v1/servers/${id}`, { name: 'bmc-1', connection: { password: '******' } })
  assert.equal(renamed.status, 200)
  assert.equal(renamed.body.name, 'bmc-1')
  assert.deepEqual(renamed.body.connection, { host: '10.1.2.3', port: 623, username: 'admin', password: '******' })
  // The cipher suite is part of where the password goes (suite 0 would send the session in clear).
  const weaker = await call('PATCH', `/v1/servers/${id}`, { connection: { cipherSuite: 17, password: '******' } })
  assert.equal(weaker.status, 422)
  assert.equal(weaker.body.field, 'connection.cipherSuite')
  assert.equal((await call('PATCH', `/v1/servers/${id}`, { connection: { cipherSuite: 17, password: BMC_PASSWORD } })).status, 200)
  const moved = await call('PATCH', `/v1/servers/${id}`, { connection: { host: '10.1.2.4', password: '******' } })
  assert.equal(moved.status, 422, 'a new destination needs the password again')
  assert.equal(moved.body.field, 'connection.host')
  const patched = await call('PATCH', `/v1/servers/${id}`, { connection: { host: '10.1.2.4', password: BMC_PASSWORD } })
  assert.equal(patched.status, 200)
  assert.deepEqual(patched.body.connection, { host: '10.1.2.4', port: 623, username: 'admin', cipherSuite: 17, password: '******' })
  assert.equal(patched.body.console.password, '******')

  const stored = await new ServerStore(api.redis, api.ns).get(id) as StoredServer
  assert.deepEqual(stored.secretPaths.sort(), ['connection.password', 'console.password'])
  assert.equal((stored.connection as Record<string, unknown>).password, undefined)
  assert.equal(stored.secrets, undefined, 'no box in the earlier form')
  const box = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: api.secretKey, PORTHOLE_SECRET_KEY_ID: 'k1', PORTHOLE_OLD_SECRET_KEYS: '' })
  assert.deepEqual(openServerSecrets(box, stored), { connection: { password: BMC_PASSWORD }, console: { password: VNC_PASSWORD } })
  assert.throws(() => openServerSecrets(box, { ...stored, id: crypto.randomUUID() }), 'the boxes are bound to the server id')

  // a new password replaces the old one
  await call('PATCH', `/v1/servers/${id}`, { connection: { password: 'n3w-pass' } })
  const again = await new ServerStore(api.redis, api.ns).get(id) as StoredServer
  assert.equal(openServerSecrets(box, again).connection?.password, 'n3w-pass')

  const dump = await dumpNamespace(api.redis, api.ns)
  for (const pw of [BMC_PASSWORD, VNC_PASSWORD, 'n3w-pass']) {
    assert.ok(!dump.includes(pw), 'Redis holds only sealed text')
    assert.ok(!responses.join('\n').includes(pw), 'no response shows a password')
    assert.ok(!api.logLines.join('\n').includes(pw), 'no log line shows a password')
  }

  assert.equal((await call('DELETE', `/v1/servers/${id}`)).status, 204)
  assert.equal((await call('GET', `/v1/servers/${id}`)).status, 404)
  assert.equal((await call('DELETE', `/v1/servers/${id}`)).status, 404)
})

test('a bad server record is a 400 problem naming the field', async (t) => {
  const api = await startTestApi(t)
  const tenantId = (await api.call('POST', '/v1/tenants', { name: 'acme' })).body.id as string
  const cases: Array<[unknown, string]> = [
    [{ name: 'x', tenantId, agent: 'ipmi', connection: { host: 'bad host!', username: 'u', password: 'p' } }, 'connection.host'],
    [{ name: 'x', tenantId, agent: 'ipmi', connection: { host: '10.0.0.1', username: 'u' } }, 'connection.password'],
    [{ name: 'x', tenantId, agent: 'ipmi', connection: { host: '10.0.0.1', port: 70000, username: 'u', password: 'p' } }, 'connection.port'],
    [{ name: 'x', tenantId, agent: 'kvm', connection: { uri: 'qemu:///system' } }, 'connection.domain'],
    [{ name: 'x', tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'd', extra: 1 } }, 'connection.extra'],
    [{ name: 'x', tenantId, agent: 'ovirt', connection: { url: 'ftp://engine', username: 'u', password: 'p', vmId: 'v' } }, 'connection.url'],
    [{ name: 'x', tenantId, agent: 'vmware', connection: {} }, 'agent'],
    [{ tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'd' } }, 'name'],
    [{ name: 'x', tenantId: 'nope', agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'd' } }, 'tenantId'],
    [{ name: 'x', tenantId: crypto.randomUUID(), agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'd' } }, 'tenantId'],
    [{ name: 'x', tenantId, agent: 'ipmi', connection: { host: 'h', username: 'u', password: 'p' }, console: { port: 0 } }, 'console.port']
  ]
  for (const [body, field] of cases) {
    const r = await api.call('POST', '/v1/servers', body)
    assert.equal(r.status, 400, JSON.stringify(body))
    assert.match(String(r.headers['content-type']), /^application\/problem\+json/)
    assert.equal(r.body.field, field, r.raw)
    assert.ok(r.body.detail.includes(field), r.body.detail)
  }
  const s = await api.call('POST', '/v1/servers', { name: 'x', tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'd' } })
  const bad = await api.call('PATCH', `/v1/servers/${s.body.id as string}`, { connection: { domain: '' } })
  assert.equal(bad.status, 400)
  assert.equal(bad.body.field, 'connection.domain')
  assert.equal((await api.call('PATCH', `/v1/servers/${s.body.id as string}`, {})).status, 400)
  assert.equal((await api.call('GET', '/v1/servers')).body.length, 1)
  assert.equal((await api.call('GET', `/v1/servers/${crypto.randomUUID()}`)).status, 404)
  assert.equal((await api.call('GET', '/v1/servers/not-a-uuid')).body.field, 'id')
})
