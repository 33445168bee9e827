// What a customer sees of its servers: what they are and what can be done with them, nothing of where they
// are hosted. Operators and admins see the whole record (passwords masked).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startTestApi, tenantWithKey, type TestApi } from './helpers.js'

/** Field names that say where a server is hosted. */
const INFRA_FIELDS = new Set(['host', 'username', 'uri', 'url', 'caCert', 'port', 'domain', 'vmId', 'connection', 'cipherSuite', 'password'])

/** Every key of a JSON value, at any depth. */
function keysOf (v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) keysOf(x, out)
  else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) { out.push(k); keysOf(x, out) }
  return out
}

const CA = '-----BEGIN CERTIFICATE-----\nMIIBfake-engine-ca\n-----END CERTIFICATE-----'
const INFRA_VALUES = ['10.20.30.40', 'bmc-admin', 'kvm-host-9.internal', 'engine.example', 'admin@internal', 'fake-engine-ca', 'vm-web-7', '5907']

async function servers (api: TestApi, tenantId: string): Promise<Record<string, string>> {
  const make = async (body: Record<string, unknown>): Promise<string> => {
    const r = await api.call('POST', '/v1/servers', { tenantId, ...body })
    assert.equal(r.status, 201, r.raw)
    return r.body.id
  }
  return {
    kvm: await make({ name: 'web-7', agent: 'kvm', connection: { uri: 'qemu+ssh://ops@kvm-host-9.internal/system', domain: 'vm-web-7' } }),
    ipmi: await make({ name: 'db-1', agent: 'ipmi', connection: { host: '10.20.30.40', port: 623, username: 'bmc-admin', password: 'bmc-pw-1' }, console: { host: '10.20.30.40', port: 5907, password: 'vncpw' } }),
    ipmiNoVnc: await make({ name: 'db-2', agent: 'ipmi', connection: { host: '10.20.30.40', username: 'bmc-admin', password: 'bmc-pw-1' } }),
    ovirt: await make({ name: 'app-1', agent: 'ovirt', connection: { url: 'https://engine.example/ovirt-engine', username: 'admin@internal', password: 'engine-pw', vmId: 'vm-web-7', caCert: CA } })
  }
}

test("a customer's GET and list of servers show no host, user, URI, URL, CA, port or domain; an operator's show them", async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'a')
  const ids = await servers(api, a.tenantId)

  const list = await api.call('GET', '/v1/servers', undefined, { key: a.key })
  assert.equal(list.status, 200)
  assert.equal(list.body.length, 4)
  const one = await Promise.all(Object.values(ids).map(async id => await api.call('GET', `/v1/servers/${id}`, undefined, { key: a.key })))
  for (const r of [list, ...one]) {
    assert.equal(r.status, 200)
    const leaked = keysOf(r.body).filter(k => INFRA_FIELDS.has(k))
    assert.deepEqual(leaked, [], `a customer's answer carries ${leaked.join(', ')}: ${r.raw}`)
    for (const v of INFRA_VALUES) assert.ok(!r.raw.includes(v), `a customer's answer carries "${v}": ${r.raw}`)
  }
  const byId = new Map<string, Record<string, unknown>>(list.body.map((s: { id: string }) => [s.id, s]))
  // What the customer does see: what the server is and what it can do, derived from the record.
  assert.deepEqual(Object.keys(byId.get(ids.ipmi as string) ?? {}).sort(), ['agent', 'console', 'createdAt', 'id', 'name', 'power', 'tenantId', 'updatedAt'])
  assert.deepEqual(byId.get(ids.ipmi as string)?.console, { protocols: ['vnc', 'guacamole', 'serial'] })
  assert.deepEqual(byId.get(ids.ipmiNoVnc as string)?.console, { protocols: ['serial'] }, 'no VNC endpoint in the record: serial only')
  assert.deepEqual(byId.get(ids.kvm as string)?.console, { protocols: ['vnc', 'guacamole'] })
  assert.deepEqual(byId.get(ids.ipmi as string)?.power, { actions: ['on', 'off', 'shutdown', 'reboot', 'reset'] })
  assert.deepEqual(byId.get(ids.ovirt as string)?.power, { actions: ['on', 'off', 'shutdown', 'reboot', 'reset', 'suspend', 'resume'] })
  assert.equal(byId.get(ids.kvm as string)?.name, 'web-7')

  const op = await api.call('POST', '/v1/api-keys', { name: 'night-shift', role: 'operator' })
  for (const key of [op.body.key as string, api.adminToken]) {
    const seen = await api.call('GET', '/v1/servers', undefined, { key })
    assert.equal(seen.status, 200)
    for (const v of ['10.20.30.40', 'bmc-admin', 'kvm-host-9.internal', 'engine.example', 'fake-engine-ca', 'vm-web-7']) assert.ok(seen.raw.includes(v), `operators and admins see "${v}"`)
    const ipmi = await api.call('GET', `/v1/servers/${ids.ipmi as string}`, undefined, { key })
    assert.deepEqual(ipmi.body.connection, { host: '10.20.30.40', port: 623, username: 'bmc-admin', password: '******' })
    assert.deepEqual(ipmi.body.console, { host: '10.20.30.40', port: 5907, password: '******' })
    for (const pw of ['bmc-pw-1', 'vncpw', 'engine-pw']) assert.ok(!seen.raw.includes(pw) && !ipmi.raw.includes(pw), 'passwords stay masked')
  }

  // Another tenant's customer sees none of them.
  const b = await tenantWithKey(api, 'b')
  assert.deepEqual((await api.call('GET', '/v1/servers', undefined, { key: b.key })).body, [])
  assert.equal((await api.call('GET', `/v1/servers/${ids.ipmi as string}`, undefined, { key: b.key })).status, 404)
})

test('the OpenAPI document describes both views of a server', async (t) => {
  const api = await startTestApi(t)
  const doc = (await api.call('GET', '/openapi.json', undefined, { key: null })).body
  const one = doc.paths['/v1/servers/{id}'].get.responses['200'].content['application/json'].schema
  const list = doc.paths['/v1/servers'].get.responses['200'].content['application/json'].schema
  for (const s of [one, list.items]) {
    const shapes = (s.anyOf ?? s.oneOf) as Array<{ properties: Record<string, unknown> }>
    assert.equal(shapes.length, 2, JSON.stringify(s))
    assert.ok(shapes.some(x => 'connection' in x.properties), 'the operator view')
    assert.ok(shapes.some(x => 'power' in x.properties && !('connection' in x.properties)), 'the customer view')
  }
})
