// What customers see of what others wrote: no agent failure messages (they name BMCs, libvirt hosts, engine
// URLs), no other principal's key id or address.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isUuid } from '@porthole/contracts'
import { CUSTOMER_FAILURE_MESSAGES } from '../src/views.js'
import { consumeJobs, startTestApi, tenantWithKey, type TestApi } from './helpers.js'

// What an agent could write: a BMC address, ipmitool's stderr, a libvirt URI.
const AGENT_MESSAGE = 'ipmitool -I lanplus -H 10.9.9.9: Unable to establish IPMI v2 / RMCP+ session (via qemu+ssh://kvm-host-7.internal/system)'
const LEAKS = ['10.9.9.9', 'ipmitool', 'kvm-host-7', 'qemu+ssh']

async function ipmiServer (api: TestApi, tenantId: string): Promise<string> {
  const r = await api.call('POST', '/v1/servers', { name: 'bmc', tenantId, agent: 'ipmi', connection: { host: '10.9.9.9', username: 'root', password: 'pw-123456' } })
  assert.equal(r.status, 201, r.raw)
  return r.body.id
}

async function operatorKey (api: TestApi): Promise<{ key: string, keyId: string }> {
  const r = await api.call('POST', '/v1/api-keys', { name: 'night-shift', role: 'operator' })
  assert.equal(r.status, 201, r.raw)
  return { key: r.body.key, keyId: r.body.id }
}

function assertNoLeak (raw: string, what: string): void {
  for (const s of LEAKS) assert.ok(!raw.includes(s), `${what} must not carry "${s}": ${raw}`)
}

test('a failed job: customers get the code, retryable and a fixed sentence; operators get the agent message', async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'a')
  const op = await operatorKey(api)
  const serverId = await ipmiServer(api, a.tenantId)
  const failure = { code: 'connection' as const, message: AGENT_MESSAGE, retryable: true }
  await consumeJobs(api, async (body) => {
    const id = (body as { id: string }).id
    await api.jobs.transition(id, 'dispatched')
    await api.jobs.transition(id, 'failed', { error: failure })
  })
  const expected = { code: 'connection', message: CUSTOMER_FAILURE_MESSAGES.connection, retryable: true }

  // power ?wait answers with the finished job (a route of server-jobs.ts: covered by the /v1 hook)
  const power = await api.call('POST', `/v1/servers/${serverId}/power?wait=10`, { action: 'off' }, { key: a.key, headers: { 'idempotency-key': 'k1' } })
  assert.equal(power.status, 200, power.raw)
  assert.equal(power.body.state, 'failed')
  assert.deepEqual(power.body.error, expected)
  assertNoLeak(power.raw, 'the power answer')
  // the replay of that key answers with the same failed job
  const replay = await api.call('POST', `/v1/servers/${serverId}/power?wait=0`, { action: 'off' }, { key: a.key, headers: { 'idempotency-key': 'k1' } })
  assert.equal(replay.headers['idempotent-replayed'], 'true')
  assert.deepEqual(replay.body.error, expected)

  const one = await api.call('GET', `/v1/jobs/${power.body.id as string}`, undefined, { key: a.key })
  assert.equal(one.status, 200)
  assert.deepEqual(one.body.error, expected)
  assertNoLeak(one.raw, 'GET /v1/jobs/{id}')

  // status and console wait for their job and answer a failure as problem+json
  const status = await api.call('GET', `/v1/servers/${serverId}/status`, undefined, { key: a.key })
  assert.equal(status.status, 502, status.raw)
  assert.match(String(status.headers['content-type']), /^application\/problem\+json/)
  assert.equal(status.body.code, 'connection')
  assert.equal(status.body.detail, CUSTOMER_FAILURE_MESSAGES.connection)
  assert.equal(status.body.retryable, true)
  assert.ok(isUuid(status.body.jobId), status.body.jobId)
  assertNoLeak(status.raw, 'the status problem')
  const consoleFail = await api.call('POST', `/v1/servers/${serverId}/console`, {}, { key: a.key })
  assert.equal(consoleFail.status, 502, consoleFail.raw)
  assert.equal(consoleFail.body.detail, CUSTOMER_FAILURE_MESSAGES.connection)
  assertNoLeak(consoleFail.raw, 'the console problem')

  const list = await api.call('GET', `/v1/jobs?serverId=${serverId}`, undefined, { key: a.key })
  assert.equal(list.body.length, 3)
  for (const j of list.body) assert.deepEqual(j.error, expected)
  assertNoLeak(list.raw, 'GET /v1/jobs')
  const failedOnly = await api.call('GET', `/v1/jobs?serverId=${serverId}&state=failed`, undefined, { key: a.key })
  assertNoLeak(failedOnly.raw, 'GET /v1/jobs?state=failed')

  // Operators (and admins) keep the detail, on the same jobs.
  const opOne = await api.call('GET', `/v1/jobs/${power.body.id as string}`, undefined, { key: op.key })
  assert.deepEqual(opOne.body.error, failure)
  const opList = await api.call('GET', `/v1/jobs?serverId=${serverId}`, undefined, { key: op.key })
  assert.ok(opList.body.every((j: { error: unknown }) => JSON.stringify(j.error) === JSON.stringify(failure)))
  const adminOne = await api.call('GET', `/v1/jobs/${status.body.jobId as string}`)
  assert.equal(adminOne.body.error.message, AGENT_MESSAGE)
  const opStatus = await api.call('GET', `/v1/servers/${serverId}/status`, undefined, { key: op.key })
  assert.equal(opStatus.status, 502)
  assert.equal(opStatus.body.detail, AGENT_MESSAGE)
})

test("a job another principal asked for shows that principal's role, not its key id, to customers", async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'a')
  const op = await operatorKey(api)
  const colleague = await api.call('POST', '/v1/api-keys', { name: 'a-portal-2', role: 'customer', tenantId: a.tenantId })
  const serverId = await ipmiServer(api, a.tenantId)
  await consumeJobs(api)
  const byOp = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' }, { key: op.key })
  const byAdmin = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'off' })
  const byColleague = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'reset' }, { key: colleague.body.key })
  const mine = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'reboot' }, { key: a.key })
  for (const r of [byOp, byAdmin, byColleague, mine]) assert.equal(r.status, 202, r.raw)
  const gone = await api.call('POST', '/v1/api-keys', { name: 'temp', role: 'operator' })
  const byGone = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' }, { key: gone.body.key })
  assert.equal((await api.call('DELETE', `/v1/api-keys/${gone.body.id as string}`)).status, 204)

  const list = await api.call('GET', `/v1/jobs?serverId=${serverId}`, undefined, { key: a.key })
  const by = new Map(list.body.map((j: { id: string, requestedBy: string }) => [j.id, j.requestedBy]))
  assert.equal(by.get(byOp.body.id), 'operator')
  assert.equal(by.get(byAdmin.body.id), 'admin')
  assert.equal(by.get(byColleague.body.id), 'customer')
  assert.equal(by.get(byGone.body.id), 'unknown')
  assert.equal(by.get(mine.body.id), a.keyId, 'its own jobs keep its key id')
  assert.ok(!list.raw.includes(op.keyId) && !list.raw.includes('bootstrap') && !list.raw.includes(colleague.body.id))
  assert.equal((await api.call('GET', `/v1/jobs/${byOp.body.id as string}`, undefined, { key: a.key })).body.requestedBy, 'operator')
  // operators see who it was
  assert.equal((await api.call('GET', `/v1/jobs/${byOp.body.id as string}`, undefined, { key: op.key })).body.requestedBy, op.keyId)
})

test("customers' audit view: others' entries show only the role, no key id and no address", async (t) => {
  const api = await startTestApi(t, { env: { TRUST_PROXY: 'true' } })
  const a = await tenantWithKey(api, 'a')
  const op = await operatorKey(api)
  const serverId = await ipmiServer(api, a.tenantId)
  await consumeJobs(api)
  const OP_IP = '203.0.113.7'
  const CUSTOMER_IP = '198.51.100.4'
  assert.equal((await api.call('PATCH', `/v1/servers/${serverId}`, { name: 'bmc-2' }, { key: op.key, headers: { 'x-forwarded-for': OP_IP } })).status, 200)
  assert.equal((await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' }, { key: op.key, headers: { 'x-forwarded-for': OP_IP } })).status, 202)
  assert.equal((await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'off' }, { key: a.key, headers: { 'x-forwarded-for': CUSTOMER_IP } })).status, 202)

  // The operator's view: everything.
  const full = await api.call('GET', `/v1/audit?serverId=${serverId}`, undefined, { key: op.key })
  const opEntry = full.body.find((e: { action: string }) => e.action === 'server.update')
  assert.equal(opEntry.actor, op.keyId)
  assert.equal(opEntry.ip, OP_IP)

  for (const url of ['/v1/audit', `/v1/audit?serverId=${serverId}`, `/v1/audit?tenantId=${a.tenantId}`]) {
    const view = await api.call('GET', url, undefined, { key: a.key })
    assert.equal(view.status, 200)
    assert.ok(!view.raw.includes(op.keyId), `${url}: no operator key id`)
    assert.ok(!view.raw.includes(OP_IP), `${url}: no operator address`)
    assert.ok(!view.raw.includes('bootstrap'), `${url}: no admin key id`)
    const entries = view.body as Array<{ action: string, actor: string, role: string, ip?: string }>
    const update = entries.find(e => e.action === 'server.update')
    assert.deepEqual([update?.actor, update?.role, update?.ip], ['operator', 'operator', undefined])
    assert.ok(entries.some(e => e.action === 'job.power.on' && e.actor === 'operator' && e.ip === undefined))
    const created = entries.find(e => e.action === 'server.create')
    assert.deepEqual([created?.actor, created?.role, created?.ip], ['admin', 'admin', undefined])
    const own = entries.find(e => e.action === 'job.power.off')
    assert.equal(own?.actor, a.keyId, 'its own entries keep its key id')
    assert.equal(own?.ip, CUSTOMER_IP, 'and its own address')
  }
})
