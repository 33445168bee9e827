import { test } from 'node:test'
import assert from 'node:assert/strict'
import { consumeJobs, kvmServer, startTestApi, tenantWithKey } from './helpers.js'

test('every mutating action and job request is audited; customers see only their tenant', async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'a')
  const b = await tenantWithKey(api, 'b')
  const sa = await kvmServer(api, a.tenantId, 'va')
  const sb = await kvmServer(api, b.tenantId, 'vb')
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
