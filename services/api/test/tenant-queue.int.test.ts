import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TenantSlots, createRedis } from '@porthole/shared/store'
import { createLogger } from '@porthole/shared/logging'
import { startStack, waitFor } from '@porthole/testkit'

test('past TENANT_MAX_QUEUED jobs waiting for a dispatch slot, the API refuses the tenant\'s next with 429 naming the limit; other tenants go on', async (t) => {
  // The real receiver, capped at one status job in flight per tenant; no agents, so a dispatched job holds its
  // slot until its deadline and the next ones are parked.
  const stack = await startStack(t, { services: ['api', 'receiver'], envFor: { api: { TENANT_MAX_QUEUED: '2' }, receiver: { TENANT_MAX_IN_FLIGHT: '1' } } })
  const redis = createRedis(stack.svc.redisUrl, createLogger({ name: 'test', level: 'silent' }), 'test')
  t.after(() => { redis.disconnect() })
  const server = async (tenantId: string): Promise<string> => (await stack.api('POST', '/v1/servers', {
    name: 'bmc', tenantId, agent: 'ipmi', connection: { host: '127.0.0.1', username: 'admin', password: 'never-shown' }
  })).body.id as string
  const tenantA = (await stack.api('POST', '/v1/tenants', { name: 'a' })).body.id as string
  const tenantB = (await stack.api('POST', '/v1/tenants', { name: 'b' })).body.id as string
  const [a, b] = [await server(tenantA), await server(tenantB)]

  for (let i = 0; i < 3; i++) assert.equal((await stack.api('GET', `/v1/servers/${a}/status?wait=0`)).status, 202)
  await waitFor(async () => await TenantSlots.parked(redis, stack.ns, tenantA, 'status') === 2, 10_000, 'two of A\'s jobs parked')

  const refused = await stack.api('GET', `/v1/servers/${a}/status?wait=0`)
  assert.equal(refused.status, 429)
  assert.match(refused.headers.get('content-type') ?? '', /^application\/problem\+json/)
  assert.equal(refused.headers.get('retry-after'), '1')
  assert.equal(refused.body.code, 'busy')
  assert.equal(refused.body.limit, 'jobs_queued_per_tenant')
  assert.equal(refused.body.setting, 'TENANT_MAX_QUEUED')
  assert.equal(refused.body.max, 2)
  assert.match(refused.body.detail, /limit 2, TENANT_MAX_QUEUED/)
  // Nothing was created for the refused request; the power lane counts apart; another tenant is served.
  assert.equal((await stack.api('GET', `/v1/jobs?serverId=${a}`)).body.length, 3)
  assert.equal((await stack.api('POST', `/v1/servers/${a}/power`, { action: 'on' })).status, 202)
  assert.equal((await stack.api('GET', `/v1/servers/${b}/status?wait=0`)).status, 202)
})
