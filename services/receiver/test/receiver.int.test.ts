import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import type { PowerJob } from '@porthole/contracts'
import { TEST_LIBVIRT_URI, at, pipeline, states, tinyDomain, virsh, waitFor, type Pipeline } from '@porthole/testkit'

// One stack for the file; its clean-ups run (last first) when every test is done. The receiver logs at debug,
// so that a test can see a decision that leaves no other trace (a job skipped).
const cleanups: Array<() => Promise<void>> = []
let p: Pipeline
before(async () => { p = await pipeline({ after: fn => cleanups.unshift(fn) }, { envFor: { receiver: { LOG_LEVEL: 'debug' } } }) })
after(async () => { for (const fn of cleanups) await fn() })

test('power off and on through the pipeline change libvirt\'s state; the job records every step', async (t) => {
  const vm = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })

  const off = await p.finished((await p.submit(server, 'power', { action: 'off' })).id)
  assert.equal(off.state, 'succeeded', JSON.stringify(off.error))
  assert.deepEqual(states(off), ['queued', 'dispatched', 'running', 'succeeded'])
  const times = off.history.map(h => Date.parse(h.at))
  assert.deepEqual(times, [...times].sort((a, b) => a - b), 'history timestamps go forward')
  assert.equal(off.updatedAt, off.history.at(-1)?.at)
  assert.equal(off.kind === 'power' ? off.result?.power : undefined, 'off')
  assert.equal(await vm.state(), 'shut off')

  const on = await p.finished((await p.submit(server, 'power', { action: 'on' })).id)
  assert.equal(on.state, 'succeeded', JSON.stringify(on.error))
  assert.deepEqual(states(on), ['queued', 'dispatched', 'running', 'succeeded'])
  assert.equal(await vm.state(), 'running')
})

test('status matches what virsh says', async (t) => {
  const vm = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const running = await p.finished((await p.submit(server, 'status')).id)
  assert.equal(running.state, 'succeeded')
  // Its start came with its end (one update, not two) and is recorded in order all the same.
  assert.deepEqual(states(running), ['queued', 'dispatched', 'running', 'succeeded'])
  const times = running.history.map(h => Date.parse(h.at))
  assert.deepEqual(times, [...times].sort((a, b) => a - b), 'history timestamps go forward')
  assert.ok(p.stack.logLines.filter(l => l.includes(running.id) && l.includes('"msg":"job update recorded"')).length === 1, 'the receiver recorded one update of the job')
  assert.equal(await vm.state(), 'running')
  assert.ok(running.result !== undefined && 'power' in running.result && running.result.power === 'on')

  await virsh('suspend', vm.name)
  const paused = await p.finished((await p.submit(server, 'status')).id)
  assert.equal(await vm.state(), 'paused')
  assert.ok(paused.result !== undefined && 'power' in paused.result && paused.result.power === 'paused')
})

test('two power jobs on one server run one after the other', async (t) => {
  const vm = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const [a, b] = await Promise.all([p.submit(server, 'power', { action: 'reset' }), p.submit(server, 'power', { action: 'reset' })])
  const ra = await p.finished(a.id)
  const rb = await p.finished(b.id)
  assert.equal(ra.state, 'succeeded', JSON.stringify(ra.error))
  assert.equal(rb.state, 'succeeded', JSON.stringify(rb.error))
  const [first, second] = at(ra, 'dispatched') <= at(rb, 'dispatched') ? [ra, rb] : [rb, ra]
  assert.ok(at(second, 'dispatched') >= at(first, 'succeeded'),
    `the second job was dispatched at ${second.history[1]?.at}, before the first ended at ${first.updatedAt}`)
  assert.equal(await vm.state(), 'running')
  // Both locks were released: a third power job goes straight through.
  const third = await p.finished((await p.submit(server, 'power', { action: 'on' })).id)
  assert.equal(third.state, 'succeeded')
})

test('a job whose agent queue has no consumer ends timed_out at its deadline', async () => {
  // This stack serves only kvm, so nothing consumes the ipmi queue.
  const server = await p.addServer('ipmi', { host: '127.0.0.1', username: 'admin' }, { connection: { password: 'ipmi-pw-never-logged' } })
  const job = await p.submit(server, 'power', { action: 'on', deadlineMs: 1500 })
  const r = await p.finished(job.id, 5000)
  assert.equal(r.state, 'timed_out')
  assert.deepEqual(states(r), ['queued', 'dispatched', 'timed_out'])
  assert.deepEqual(r.error, { code: 'timeout', message: 'no answer by the deadline', retryable: true })
  const late = at(r, 'timed_out') - Date.parse(job.deadline)
  assert.ok(late >= 0 && late < 1500, `timed out ${late} ms after the deadline`)
  // The timed-out power job let go of the server's lock.
  assert.equal(await p.redis.get(`${p.stack.ns}:lock:power:${server.id}`), null)
  assert.ok(!p.stack.logs().includes('ipmi-pw-never-logged'))
})

test('a message that is not JSON is dead-lettered', async () => {
  const marker = `not json ${randomUUID()}`
  const ch = await p.amqp.rawChannel()
  ch.publish(p.n.jobsExchange, p.n.receiverKey, Buffer.from(`{${marker}`))
  await ch.close()
  await waitFor(async () => (await p.dead()).some(b => b.includes(marker)), 5000, 'the message in the dead queue')
})

test('a result that is not its job kind\'s fails the job instead of being recorded as its result', async () => {
  const now = Date.now()
  const job: PowerJob = {
    id: randomUUID(), kind: 'power', action: 'on', serverId: randomUUID(), tenantId: p.tenantId, requestedBy: 'test',
    createdAt: new Date(now).toISOString(), deadline: new Date(now + 10_000).toISOString(), attempt: 1, traceId: 'wrong-result'
  }
  await p.jobs.create(job)
  await p.jobs.transition(job.id, 'dispatched')
  // A console job's result for a power job, as a confused agent could send it.
  const result = { sessionId: randomUUID(), protocol: 'vnc', expiresAt: new Date(now + 60_000).toISOString() }
  await p.amqp.publish(p.n.resultsExchange, p.n.resultsKeyOf('power'), { jobId: job.id, state: 'succeeded', at: new Date().toISOString(), result })
  const r = await p.finished(job.id, 5000)
  assert.equal(r.state, 'failed')
  assert.equal(r.error?.code, 'internal')
  assert.match(r.error?.message ?? '', /not a power job's/)
  assert.equal(r.result, undefined)
})

test('an invalid job is dead-lettered and its job marked failed', async () => {
  const vmless = await p.addServer('kvm', { uri: TEST_LIBVIRT_URI, domain: 'unused' })
  const job = await p.submit(vmless, 'status', { deadlineMs: 60_000 }) // the real one: let it finish (not_found)
  await p.finished(job.id)
  // A job whose record exists but is still queued, published in an invalid shape.
  const bad = { ...job, id: randomUUID(), kind: 'explode' }
  await p.jobs.create({ ...job, id: bad.id })
  await p.amqp.publish(p.n.jobsExchange, p.n.receiverKey, bad)
  const r = await p.finished(bad.id, 5000)
  assert.equal(r.state, 'failed')
  assert.equal(r.error?.code, 'poison')
  assert.equal(r.error?.retryable, false)
  assert.match(r.error?.message ?? '', /kind/)
  await waitFor(async () => (await p.dead()).some(b => b.includes(bad.id)), 5000, 'the job in the dead queue')
})

test('a job for a server that does not exist fails with not_found', async () => {
  const ghost = await p.addServer('kvm', { uri: TEST_LIBVIRT_URI, domain: 'ghost' })
  await p.servers.delete(ghost)
  const r = await p.finished((await p.submit(ghost, 'status')).id)
  assert.equal(r.state, 'failed')
  assert.equal(r.error?.code, 'not_found')
})

test('a libvirt URI nobody answers at fails the job with connection', async () => {
  const server = await p.addServer('kvm', { uri: 'qemu+tcp://127.0.0.1:1/system', domain: 'any' })
  const r = await p.finished((await p.submit(server, 'power', { action: 'on', deadlineMs: 5000 })).id, 8000)
  assert.equal(r.state, 'failed')
  assert.equal(r.error?.code, 'connection')
  assert.equal(r.error?.retryable, true)
  assert.deepEqual(states(r), ['queued', 'dispatched', 'running', 'failed'])
})

test('a job already finished when it reaches the receiver is skipped', async (t) => {
  const vm = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const now = Date.now()
  const job = {
    id: randomUUID(), kind: 'power' as const, action: 'off' as const, serverId: server.id, tenantId: server.tenantId, requestedBy: 'test',
    createdAt: new Date(now).toISOString(), deadline: new Date(now + 10_000).toISOString(), attempt: 1, traceId: 'x'
  }
  await p.jobs.create(job)
  await p.jobs.transition(job.id, 'failed', { error: { code: 'unavailable', message: 'broker confirm lost', retryable: true } })
  await p.amqp.publish(p.n.jobsExchange, p.n.receiverKeyOf(job.kind), job)
  // The receiver's own word that it skipped this job (its record cannot tell: a terminal state never changes,
  // whoever tries to write it), and the agents' that they never got it: the VM is still running.
  const skipped = await waitFor(() => p.stack.logLines.find(l => l.includes(job.id) && l.includes('"msg":"job already finished; skipping"')), 10_000, 'the receiver to skip the job')
  assert.match(skipped, /"state":"failed"/)
  assert.ok(!p.stack.logLines.some(l => l.includes(job.id) && l.includes('"service":"agents"')), 'no agent saw the job')
  assert.equal(await vm.state(), 'running')
})
