// Webhooks through the whole system: real jobs (API → RabbitMQ → receiver → kvm agent → libvirt) are told to
// a receiver run by the test, every request signed; an endpoint that hangs holds only its own delivery
// slots, never a job.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startWebhookReceiver, tinyDomain, waitFor } from '@porthole/testkit'
import { fileStack, kvmServer, power, tenant } from './fixtures.js'

// Loopback receivers need WEBHOOK_ALLOW_PRIVATE; a hanging attempt is held far longer than the test runs.
const stack = await fileStack({ envFor: { api: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT_SECONDS: '120', WEBHOOK_CONCURRENCY_PER_URL: '2' } } })
const acme = await tenant(stack, 'acme')

test('real jobs reach a signed webhook; an endpoint that never answers delays no job', async (t) => {
  const dom = await tinyDomain(t)
  const serverId = await kvmServer(stack, acme.tenantId, dom)
  const ok = await startWebhookReceiver(t)
  const stuck = await startWebhookReceiver(t)
  stuck.answer = () => 'hang'
  const a = await stack.api('POST', '/v1/webhooks', { url: ok.url, events: ['job.*', 'console.opened'] }, { key: acme.customerKey })
  const s = await stack.api('POST', '/v1/webhooks', { url: stuck.url }, { key: acme.customerKey })
  assert.equal(a.status, 201, JSON.stringify(a.body))
  assert.equal(s.status, 201, JSON.stringify(s.body))
  ok.secret = a.body.secret
  stuck.secret = s.body.secret

  const off = await power(stack, serverId, 'off', acme.customerKey)
  assert.equal(off.state, 'succeeded')
  // The stuck endpoint holds its two slots (WEBHOOK_CONCURRENCY_PER_URL) with requests it never answers.
  await waitFor(() => stuck.hanging() === 2, 10_000, 'the stuck endpoint to hold two requests')
  // Jobs go on all the same: a power job and a console, each to its end, while those two still hang.
  const on = await power(stack, serverId, 'on', acme.customerKey)
  assert.equal(on.state, 'succeeded')
  const con = await stack.api('POST', `/v1/servers/${serverId}/console`, {}, { key: acme.customerKey })
  assert.equal(con.status, 201, JSON.stringify(con.body))
  assert.equal(stuck.hanging(), 2, 'the stuck requests are still open')
  assert.ok(stuck.received.every(w => w.verified))

  const types = (jobId: string): string[] => ok.received.filter(w => w.body?.data?.jobId === jobId).map(w => w.body.type as string).sort()
  const life = ['job.dispatched', 'job.queued', 'job.running', 'job.succeeded']
  await waitFor(() => types(on.id).length === 4 && ok.received.some(w => w.body?.type === 'console.opened'), 10_000, 'the good endpoint to hear of both jobs and the console')
  await waitFor(() => types(off.id).length === 4, 10_000, 'every event of the first job')
  assert.deepEqual(types(off.id), life)
  assert.deepEqual(types(on.id), life)
  assert.ok(ok.received.every(w => w.verified), 'every request is signed with the webhook\'s secret')
  assert.equal(new Set(ok.received.map(w => w.id)).size, ok.received.length, 'one request per event: each answered 200 at once')
  const opened = ok.received.find(w => w.body?.type === 'console.opened')
  assert.equal(opened?.body.data.sessionId, con.body.sessionId)
  // The hanging deliveries are listed as under way (pending), the others delivered.
  const stuckList = await stack.api('GET', `/v1/webhooks/${s.body.id}/deliveries`, undefined, { key: acme.customerKey })
  assert.ok(stuckList.body.length >= 9 && stuckList.body.every((d: { outcome: string }) => d.outcome === 'pending'), JSON.stringify(stuckList.body))
  const okList = await stack.api('GET', `/v1/webhooks/${a.body.id}/deliveries`, undefined, { key: acme.customerKey })
  await waitFor(async () => (await stack.api('GET', `/v1/webhooks/${a.body.id}/deliveries`, undefined, { key: acme.customerKey })).body.every((d: { outcome: string }) => d.outcome === 'delivered'), 10_000, 'every delivery recorded')
  assert.ok(okList.body.length >= 9)
  // The secrets were shown once and never logged.
  for (const secret of [a.body.secret, s.body.secret]) assert.ok(!stack.logs().includes(String(secret).slice(6)), 'no webhook secret in a log line')
})
