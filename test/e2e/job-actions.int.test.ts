// Cancel and retry through the whole system: a cancelled job is never dispatched once a receiver runs, a
// cancel racing the dispatch has exactly one winner (cancelled, or ran to its end), and a failed job retried
// after its cause is fixed succeeds as a new job linked to the old one.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startStack, tinyDomain, waitFor } from '@porthole/testkit'
import { finished, kvmServer, tenant } from './fixtures.js'

test('a job cancelled while queued stays cancelled when the receiver starts: no agent touches the VM', async (t) => {
  const dom = await tinyDomain(t)
  const stack = await startStack(t, { services: ['api'] }) // nothing consumes jobs yet
  const acme = await tenant(stack)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const job = (await stack.api('POST', `/v1/servers/${id}/power`, { action: 'off' }, { key: acme.customerKey })).body
  const c = await stack.api('POST', `/v1/jobs/${job.id as string}/cancel`, undefined, { key: acme.customerKey })
  assert.equal(c.status, 200, JSON.stringify(c.body))
  await stack.start('receiver')
  await stack.start('agents')
  // The receiver has taken every message from its queue (the cancelled job's among them).
  const queue = `${stack.ns}.jobs.receiver`
  await waitFor(async () => {
    const m = (await stack.api('GET', '/metrics', undefined, { key: null })).body as string
    return m.includes(`porthole_queue_messages{queue="${queue}"} 0`) && m.includes(`porthole_queue_consumers{queue="${queue}"} 1`)
  }, 30_000, 'the receiver to drain its queue')
  // A job after it goes through: the pipeline runs, and had the cancelled one been dispatched it would have run first.
  const status = await stack.api('GET', `/v1/servers/${id}/status?wait=30`, undefined, { key: acme.customerKey })
  assert.equal(status.status, 200, JSON.stringify(status.body))
  assert.equal(status.body.power, 'on')
  assert.equal(await dom.state(), 'running', 'the cancelled "off" never reached libvirt')
  const rec = (await stack.api('GET', `/v1/jobs/${job.id as string}`, undefined, { key: acme.customerKey })).body
  assert.deepEqual(rec.history.map((h: { state: string }) => h.state), ['queued', 'cancelled'])
})

test('a failed power job retried once its server is fixed succeeds as a new job whose retryOf names the old one', async (t) => {
  const dom = await tinyDomain(t, { start: false })
  const stack = await startStack(t)
  const acme = await tenant(stack)
  const id = await kvmServer(stack, acme.tenantId, { uri: dom.uri, name: `${dom.name}-typo` })
  const first = await finished(stack, (await stack.api('POST', `/v1/servers/${id}/power`, { action: 'on' }, { key: acme.customerKey })).body.id, acme.customerKey)
  assert.equal(first.state, 'failed')
  assert.equal(first.error.code, 'not_found')
  const fix = await stack.api('PATCH', `/v1/servers/${id}`, { connection: { uri: dom.uri, domain: dom.name } })
  assert.equal(fix.status, 200, JSON.stringify(fix.body))
  const r = await stack.api('POST', `/v1/jobs/${first.id as string}/retry`, undefined, { key: acme.customerKey })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  const retry = await finished(stack, r.body.id, acme.customerKey)
  assert.equal(retry.state, 'succeeded', JSON.stringify(retry))
  assert.equal(retry.retryOf, first.id)
  assert.equal(await dom.state(), 'running')
})

test('cancels racing the receiver\'s dispatch: each job either ends cancelled, never dispatched, or runs to its end and the cancel is a 409', async (t) => {
  const dom = await tinyDomain(t)
  const stack = await startStack(t)
  const acme = await tenant(stack)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const key = acme.customerKey
  // Power jobs (the durable lane, one at a time per server: the later ones wait in the delay queue, still
  // queued) and status jobs (the interactive lane), each cancelled as soon as it exists, all at once.
  const outcomes = await Promise.all(Array.from({ length: 16 }, async (_x, i) => {
    const created = i % 2 === 0
      ? await stack.api('POST', `/v1/servers/${id}/power`, { action: 'on' }, { key })
      : await stack.api('GET', `/v1/servers/${id}/status?wait=0`, undefined, { key })
    assert.equal(created.status, 202, JSON.stringify(created.body))
    const jobId = created.body.id as string
    const cancel = await stack.api('POST', `/v1/jobs/${jobId}/cancel`, undefined, { key })
    const end = await waitFor(async () => {
      const r = await stack.api('GET', `/v1/jobs/${jobId}`, undefined, { key })
      return ['succeeded', 'failed', 'timed_out', 'cancelled'].includes(r.body.state) ? r.body : undefined
    }, 60_000, `job ${jobId} to end`, 50)
    return { jobId, cancel: cancel.status, state: end.state as string, history: (end.history as Array<{ state: string }>).map(h => h.state) }
  }))
  for (const o of outcomes) {
    const what = JSON.stringify(o)
    if (o.cancel === 200) {
      assert.equal(o.state, 'cancelled', what)
      assert.deepEqual(o.history, ['queued', 'cancelled'], `cancelled and never dispatched: ${what}`)
    } else {
      assert.equal(o.cancel, 409, what)
      assert.equal(o.state, 'succeeded', `the cancel lost: the job ran to its end: ${what}`)
      assert.deepEqual(o.history.slice(0, 2), ['queued', 'dispatched'], what)
      assert.ok(!o.history.includes('cancelled'), what)
    }
  }
  t.diagnostic(`cancelled ${outcomes.filter(o => o.state === 'cancelled').length} of ${outcomes.length}, the others ran`)
  // Nothing stays held: a cancelled power job released the server, so a new one still runs.
  const after = await stack.api('POST', `/v1/servers/${id}/power?wait=30`, { action: 'on' }, { key })
  assert.equal(after.body.state, 'succeeded', JSON.stringify(after.body))
  assert.equal(await dom.state(), 'running')
})
