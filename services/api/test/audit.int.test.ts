import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { keys } from '@porthole/shared/store'
import { consumeJobs, startTestApi, twoTenants } from './helpers.js'

test('every mutating action and job request is audited; customers see only their tenant', async (t) => {
  const api = await startTestApi(t)
  const { a, sa, sb } = await twoTenants(api)
  await consumeJobs(api)
  const job = await api.call('POST', `/v1/servers/${sa}/power`, { action: 'off' }, { key: a.key })
  await api.call('PATCH', `/v1/servers/${sb}`, { name: 'vb2' })

  const all = await api.call('GET', '/v1/audit')
  assert.equal(all.status, 200)
  const actions = all.body.map((e: { action: string }) => e.action)
  for (const x of ['tenant.create', 'api-key.create', 'server.create', 'server.update', 'job.power.off']) assert.ok(actions.includes(x), x)
  const entry = all.body.find((e: { action: string }) => e.action === 'job.power.off')
  assert.equal(entry.actor, a.keyId)
  assert.equal(entry.role, 'customer')
  assert.equal(entry.tenantId, a.tenantId)
  assert.equal(entry.serverId, sa)
  assert.equal(entry.jobId, job.body.id)
  assert.equal(entry.result, 'accepted')
  assert.equal(typeof entry.ip, 'string')
  assert.ok(Date.parse(entry.at) > 0)

  const mine = await api.call('GET', '/v1/audit', undefined, { key: a.key })
  assert.ok(mine.body.length > 0)
  assert.ok(mine.body.every((e: { tenantId: string }) => e.tenantId === a.tenantId))
  assert.deepEqual((await api.call('GET', `/v1/audit?serverId=${sb}`, undefined, { key: a.key })).body, [])
  const bServer = await api.call('GET', `/v1/audit?serverId=${sb}`)
  assert.deepEqual(bServer.body.map((e: { action: string }) => e.action), ['server.update', 'server.create'])
})

test('the audit log is one stream per tenant trimmed by age: old entries go, a customer can neither see nor flush another tenant\'s history', async (t) => {
  const api = await startTestApi(t, { env: { AUDIT_RETENTION_DAYS: '30' } })
  const { a, b, sa, sb } = await twoTenants(api)
  await consumeJobs(api)
  const k = keys(api.ns)
  const monthAgo = Date.now() - 31 * 86_400_000
  const old = (tenantId: string, action: string): string => JSON.stringify({ at: new Date(monthAgo).toISOString(), actor: 'x', role: 'admin', tenantId, action, result: 'ok' })
  // Entries 31 days old, as if written then (a stream id is its time): one in a's stream, which a writes to
  // again, and one in a stream nobody writes to any more (listed in the index as recently written).
  const oldId = `${monthAgo}-0`
  await api.redis.del(k.auditTenant(a.tenantId))
  await api.redis.xadd(k.auditTenant(a.tenantId), oldId, 'e', old(a.tenantId, 'ancient.a'))
  const quiet = randomUUID()
  await api.redis.xadd(k.auditTenant(quiet), oldId, 'e', old(quiet, 'ancient.quiet'))
  await api.redis.zadd(k.auditStreams, Date.now(), k.auditTenant(quiet))
  await api.call('PATCH', `/v1/servers/${sb}`, { name: 'vb2' })
  const job = await api.call('POST', `/v1/servers/${sa}/power`, { action: 'off' }, { key: a.key, headers: { 'idempotency-key': 'k-1' } })
  assert.equal(job.status, 202)

  // Writing trimmed a's old entry in Redis itself; b's old one is never listed though nobody trimmed it.
  const aIds = (await api.redis.xrange(k.auditTenant(a.tenantId), '-', '+')).map(([id]) => id)
  assert.ok(!aIds.includes(oldId), 'the old entry was trimmed on write')
  assert.equal(await api.redis.xlen(k.auditTenant(quiet)), 1)
  const all = (await api.call('GET', '/v1/audit?limit=1000')).body.map((e: { action: string }) => e.action)
  assert.ok(all.includes('job.power.off'))
  assert.ok(!all.includes('ancient.a') && !all.includes('ancient.quiet'), all.join(','))
  assert.deepEqual((await api.call('GET', `/v1/audit?tenantId=${quiet}`)).body, [])

  // Replays of an Idempotency-Key add nothing, so flooding them costs the log nothing.
  const len = await api.redis.xlen(k.auditTenant(a.tenantId))
  for (let i = 0; i < 20; i++) assert.equal((await api.call('POST', `/v1/servers/${sa}/power`, { action: 'off' }, { key: a.key, headers: { 'idempotency-key': 'k-1' } })).body.id, job.body.id)
  assert.equal(await api.redis.xlen(k.auditTenant(a.tenantId)), len)
  // Whatever a does lands in a's stream only: b's history stays whole.
  for (let i = 0; i < 20; i++) await api.call('POST', `/v1/servers/${sa}/power`, { action: 'on' }, { key: a.key })
  const bHistory = (await api.call('GET', `/v1/audit?tenantId=${b.tenantId}`)).body.map((e: { action: string }) => e.action)
  for (const x of ['server.update', 'server.create', 'api-key.create', 'tenant.create']) assert.ok(bHistory.includes(x), x)
  const mine = (await api.call('GET', '/v1/audit?limit=1000', undefined, { key: a.key })).body
  assert.ok(mine.length > 20 && mine.every((e: { tenantId: string }) => e.tenantId === a.tenantId))
  assert.deepEqual((await api.call('GET', `/v1/audit?tenantId=${b.tenantId}`, undefined, { key: a.key })).body, [])

  // Admins see every stream merged newest first, including the one of actions without a tenant.
  const merged = (await api.call('GET', '/v1/audit?limit=1000')).body as Array<{ at: string, action: string, tenantId?: string }>
  const times = merged.map(e => Date.parse(e.at))
  assert.deepEqual(times, [...times].sort((x, y) => y - x))
  assert.ok(merged.some(e => e.tenantId === a.tenantId) && merged.some(e => e.tenantId === b.tenantId))
  await api.call('DELETE', `/v1/api-keys/${b.keyId}`)
  assert.ok(await api.redis.xlen(k.auditSystem) >= 1, 'a key deletion has no tenant: the system stream')
  assert.equal((await api.call('GET', '/v1/audit?limit=1')).body[0].action, 'api-key.delete')
})
