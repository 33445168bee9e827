import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { DELIVERY_LIMIT } from '@porthole/shared/amqp'
import { pipeline, states, waitFor, type Pipeline } from '@porthole/testkit'

// The deadline sweeper is slowed to once a minute here, so a job that ends early was ended by the
// receiver's dead-letter watch, not by the sweeper.
const cleanups: Array<() => Promise<void>> = []
let p: Pipeline
before(async () => { p = await pipeline({ after: fn => cleanups.unshift(fn) }, { envFor: { receiver: { DEADLINE_SWEEP_MS: '60000' } } }) })
after(async () => { for (const fn of cleanups) await fn() })

test('a power job whose message fails its consumer again and again fails (retryable) once RabbitMQ gives up', async () => {
  // This stack serves only kvm: a stand-in for a broken ipmi agent that requeues every delivery.
  const server = await p.addServer('ipmi', { host: '127.0.0.1', username: 'admin' })
  let deliveries = 0
  await p.amqp.consume(p.n.agentQueue('ipmi'), async () => { deliveries++; return 'requeue' }, { prefetch: 1 })
  const job = await p.submit(server, 'power', { action: 'on', deadlineMs: 60_000 })
  const r = await p.finished(job.id, 15_000)
  assert.equal(r.state, 'failed')
  assert.equal(r.error?.code, 'unavailable')
  assert.equal(r.error?.retryable, true)
  assert.match(r.error?.message ?? '', new RegExp(`dead-lettered from ${p.n.agentQueue('ipmi').replaceAll('.', '\\.')} after ${DELIVERY_LIMIT} failed deliveries`))
  assert.deepEqual(states(r), ['queued', 'dispatched', 'failed'])
  assert.ok(deliveries > DELIVERY_LIMIT - 1, `the stand-in saw ${deliveries} deliveries`)
  assert.ok(Date.parse(r.updatedAt) < Date.parse(job.deadline) - 30_000, 'failed long before its deadline')
  // The failed power job lets go of the server's lock (just after its end is recorded), and operators still
  // find the message in the dead queue.
  await waitFor(async () => await p.redis.get(`${p.stack.ns}:lock:power:${server.id}`) === null, 10_000, "the failed job's power lock to be released")
  assert.ok((await p.dead()).some(b => b.includes(job.id)))
})

test('a status job nobody takes expires in its queue at its deadline and times out then, without the sweeper', async () => {
  const server = await p.addServer('ipmi', { host: '127.0.0.1', username: 'admin' })
  // Nothing consumes the ipmi interactive queue in this stack.
  const job = await p.submit(server, 'status', { deadlineMs: 1000 })
  const r = await p.finished(job.id, 10_000)
  assert.equal(r.state, 'timed_out')
  assert.deepEqual(states(r), ['queued', 'dispatched', 'timed_out'])
  const late = Date.parse(r.updatedAt) - Date.parse(job.deadline)
  assert.ok(late >= 0 && late < 5000, `timed out ${late} ms after the deadline (the sweeper would take up to a minute)`)
  assert.ok((await p.dead()).some(b => b.includes(job.id)), 'the expired request is in the dead-letter queue')
})

test('a dead letter is judged by its newest death: a job that once expired in the delay queue and then hit the delivery limit fails, not times out', async () => {
  // Nothing serves ovirt in this stack: the job waits in its agent queue until the forged dead letter ends it.
  const server = await p.addServer('ovirt', { url: 'https://engine.example', username: 'admin@internal', vmId: 'vm-1' })
  const job = await p.submit(server, 'power', { action: 'on', deadlineMs: 60_000 })
  await waitFor(async () => (await p.jobs.get(job.id))?.state === 'dispatched', 5000, 'the job to be dispatched')
  // What RabbitMQ puts on such a message (x-death, newest first), sent as it would arrive from ns.jobs.receiver.
  const ch = await p.amqp.rawChannel()
  try {
    ch.publish(p.n.deadExchange, '', Buffer.from(JSON.stringify(job)), {
      headers: {
        'x-first-death-reason': 'expired',
        'x-first-death-queue': p.n.delayQueue,
        'x-death': [
          { reason: 'delivery_limit', queue: p.n.receiverQueue, count: 1, exchange: p.n.jobsExchange, 'routing-keys': [p.n.receiverKey] },
          { reason: 'expired', queue: p.n.delayQueue, count: 1, exchange: '', 'routing-keys': [p.n.delayQueue] }
        ]
      }
    })
  } finally { await ch.close().catch(() => {}) }
  const r = await p.finished(job.id, 5000)
  assert.equal(r.state, 'failed')
  assert.equal(r.error?.code, 'unavailable')
  assert.match(r.error?.message ?? '', new RegExp(p.n.receiverQueue.replaceAll('.', '\\.')))
})
