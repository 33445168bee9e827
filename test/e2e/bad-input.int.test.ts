// Bad input through the whole system: each gets the right status and a problem+json body, and nothing is
// lost or left half-done (no stray job, no message left in a queue).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { names } from '@porthole/shared/amqp'
import { tinyDomain, type ApiResponse } from '@porthole/testkit'
import { fileStack, finished, kvmServer, tenant } from './fixtures.js'

const stack = await fileStack()
const acme = await tenant(stack, 'acme')
const other = await tenant(stack, 'globex')

function problem (r: ApiResponse, status: number): void {
  assert.equal(r.status, status, JSON.stringify(r.body))
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/)
  assert.equal(r.body.status, status)
  assert.equal(typeof r.body.title, 'string')
  assert.equal(typeof r.body.type, 'string')
}

async function jobCount (): Promise<number> {
  const r = await stack.api('GET', '/v1/jobs?limit=500')
  assert.equal(r.status, 200)
  return (r.body.items ?? r.body).length
}

test('refused requests answer problem+json and create no job', async (t) => {
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const before = await jobCount()

  problem(await stack.api('POST', `/v1/servers/${id}/power`, { action: 'explode' }), 400)
  problem(await stack.api('POST', `/v1/servers/${id}/power`, {}), 400)
  problem(await stack.api('POST', `/v1/servers/${randomUUID()}/power`, { action: 'on' }), 404)
  problem(await stack.api('POST', '/v1/servers/not-a-uuid/power', { action: 'on' }), 400)
  problem(await stack.api('POST', `/v1/servers/${id}/power`, '{"action": "on"'), 400)
  problem(await stack.api('POST', `/v1/servers/${id}/power`, JSON.stringify({ action: 'on', pad: 'x'.repeat(2_000_000) })), 413)
  problem(await stack.api('POST', `/v1/servers/${id}/power`, { action: 'on' }, { key: null }), 401)
  problem(await stack.api('POST', `/v1/servers/${id}/power`, { action: 'on' }, { key: 'ph_wrong' }), 401)
  // Another tenant's server does not exist for this customer.
  problem(await stack.api('POST', `/v1/servers/${id}/power`, { action: 'off' }, { key: other.customerKey }), 404)
  problem(await stack.api('GET', `/v1/servers/${id}`, undefined, { key: other.customerKey }), 404)
  problem(await stack.api('GET', `/v1/servers/${id}/status`, undefined, { key: other.customerKey }), 404)

  assert.equal(await jobCount(), before)
  assert.equal(await dom.state(), 'running')
  const stats = await queueDepths()
  for (const q of [names(stack.ns).receiverQueue, names(stack.ns).receiverInteractiveQueue]) assert.equal(stats.get(q), 0, q)
})

test('a dead libvirt URI ends the job as a classed connection failure within its deadline', async () => {
  const r = await stack.api('POST', '/v1/servers', { name: 'ghost', tenantId: acme.tenantId, agent: 'kvm', connection: { uri: 'qemu+tcp://127.0.0.1:1/system', domain: 'ghost' } })
  assert.equal(r.status, 201)
  const job = await stack.api('POST', `/v1/servers/${r.body.id}/power?wait=20`, { action: 'on' })
  const rec = job.body.state === undefined ? await finished(stack, job.body.jobId ?? job.body.id) : job.body
  // "failed" with a class, not "timed_out": the agent gave its answer before the deadline did.
  assert.equal(rec.state, 'failed', JSON.stringify(rec))
  assert.equal(rec.error.code, 'connection')
})

test('a libvirt URI that would run a command is refused naming the field', async () => {
  for (const uri of ['qemu+ext:///system?command=/bin/sh', 'qemu+ssh://h/system?netcat=/tmp/x']) {
    const r = await stack.api('POST', '/v1/servers', { name: 'evil', tenantId: acme.tenantId, agent: 'kvm', connection: { uri, domain: 'x' } })
    problem(r, 400)
    assert.equal(r.body.field, 'connection.uri', JSON.stringify(r.body))
  }
  const https = await stack.api('POST', '/v1/servers', { name: 'engine', tenantId: acme.tenantId, agent: 'ovirt', connection: { url: 'http://engine.example/ovirt-engine', username: 'admin@internal', password: 'pw', vmId: 'v1' } })
  problem(https, 400)
  assert.equal(https.body.field, 'connection.url')
})

test('a bad server record is refused naming the field', async () => {
  const r = await stack.api('POST', '/v1/servers', { name: 'x', tenantId: acme.tenantId, agent: 'ipmi', connection: { username: 'root', password: 'pw' } })
  problem(r, 400)
  assert.match(JSON.stringify(r.body), /connection\.host|host/)
  assert.ok(!JSON.stringify(r.body).includes('"pw"'))
})

async function queueDepths (): Promise<Map<string, number>> {
  const { AmqpClient } = await import('@porthole/shared/amqp')
  const { createLogger } = await import('@porthole/shared/logging')
  const c = new AmqpClient({ url: stack.svc.rabbitmqUrl, namespace: stack.ns, log: createLogger({ name: 't', level: 'silent' }), name: 'test', declare: false })
  await c.start()
  try {
    return new Map((await c.queueStats(names(stack.ns).allQueues())).map(s => [s.queue, s.messages]))
  } finally { await c.close() }
}
