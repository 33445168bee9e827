import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { AmqpClient, type Delivery, type Disposition } from '@porthole/shared/amqp'
import type { AgentRequest, Job, StoredServer } from '@porthole/contracts'
import { createLogger } from '@porthole/shared/logging'
import { TenantSlots, keys } from '@porthole/shared/store'
import { mainOf, pipeline, states, waitFor, type Pipeline } from '@porthole/testkit'

// One stack for the file, its receiver capped at CAP jobs in flight per tenant. The servers are ipmi ones:
// this stack's agents serve only kvm, so each test's stand-in agent is the only consumer of the ipmi queue.
// It sees exactly what the receiver dispatched, and holds a tenant's jobs unanswered while told to.
const CAP = 3
const cleanups: Array<() => Promise<void>> = []
let p: Pipeline
before(async () => { p = await pipeline({ after: fn => cleanups.unshift(fn) }, { envFor: { receiver: { TENANT_MAX_IN_FLIGHT: String(CAP), TENANT_MAX_POWER_IN_FLIGHT: String(CAP) } } }) })
after(async () => { for (const fn of cleanups) await fn() })

interface FakeAgent {
  /** Job ids in the order the agent received them, with the time each arrived. */
  received: Array<{ jobId: string, tenantId: string, at: number }>
  /** The most jobs of the slot group (a tenant's, in one lane) the agent held unanswered at one time. */
  maxHeld: (group: string) => number
  held: (group: string) => number
  /** Answers the group's held jobs and every later one at once. */
  release: (group: string) => void
}

/**
 * A stand-in ipmi agent (both lanes) that answers every request at once, except those of `holding` slot
 * groups or server ids (held and released by that key).
 */
async function fakeAgent (t: { after: (fn: () => Promise<void>) => void }, holding: string[]): Promise<FakeAgent> {
  const amqp = new AmqpClient({ url: p.stack.svc.rabbitmqUrl, namespace: p.stack.ns, log: createLogger({ name: 'fake-agent', level: 'silent' }), name: 'fake-agent' })
  await amqp.start()
  const hold = new Set(holding)
  const waiting = new Map<string, Array<() => void>>()
  const max = new Map<string, number>()
  const received: FakeAgent['received'] = []
  const release = (group: string): void => {
    hold.delete(group)
    for (const go of waiting.get(group) ?? []) go()
    waiting.delete(group)
  }
  t.after(async () => { for (const g of [...hold]) release(g); await amqp.close() })
  const handler = async (d: Delivery): Promise<Disposition> => {
    const { job } = d.body as AgentRequest
    received.push({ jobId: job.id, tenantId: job.tenantId, at: Date.now() })
    const group = hold.has(job.serverId) ? job.serverId : TenantSlots.groupOf(job.tenantId, job.kind)
    if (hold.has(group)) {
      const list = waiting.get(group) ?? []
      waiting.set(group, list)
      await new Promise<void>(resolve => {
        list.push(resolve)
        max.set(group, Math.max(max.get(group) ?? 0, list.length))
      })
    }
    const now = new Date().toISOString()
    await amqp.publish(p.n.resultsExchange, p.n.resultsKeyOf(job.kind), { jobId: job.id, state: 'succeeded', at: now, result: { power: 'on', checkedAt: now } })
    return 'ack'
  }
  await amqp.consume(p.n.agentInteractiveQueue('ipmi'), handler, { prefetch: 1000 })
  await amqp.consume(p.n.agentQueue('ipmi'), handler, { prefetch: 1000 })
  return { received, release, maxHeld: g => max.get(g) ?? 0, held: g => waiting.get(g)?.length ?? 0 }
}

async function tenantServer (): Promise<StoredServer> {
  return await p.addServer('ipmi', { host: '127.0.0.1', username: 'admin' }, undefined, randomUUID())
}

/** The tenant's slots and parked jobs in the interactive lane (status jobs), as Redis holds them. */
async function slotsOf (tenantId: string): Promise<{ inFlight: number, parked: number }> {
  const k = keys(p.stack.ns)
  const group = TenantSlots.groupOf(tenantId, 'status')
  return { inFlight: await p.redis.zcard(k.inFlight(group)), parked: await p.redis.zcard(k.parked(group)) }
}

/** A second receiver replica on the same namespace, as a process; `kill()` ends it with SIGKILL. */
async function secondReceiver (t: { after: (fn: () => Promise<void>) => void }): Promise<{ out: () => string, kill: () => Promise<void> }> {
  const proc = spawn(process.execPath, [mainOf('receiver')], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', RABBITMQ_URL: p.stack.svc.rabbitmqUrl, REDIS_URL: p.stack.svc.redisUrl, PORTHOLE_NAMESPACE: p.stack.ns, LOG_LEVEL: 'debug', TENANT_MAX_IN_FLIGHT: String(CAP), RECEIVER_METRICS_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  proc.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
  proc.stderr.setEncoding('utf8').on('data', (s: string) => { out += s })
  const exited = new Promise<void>(resolve => proc.once('exit', () => resolve()))
  const kill = async (): Promise<void> => { if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await exited } }
  t.after(kill)
  await waitFor(() => out.includes('"msg":"ready"') || proc.exitCode !== null, 30_000, 'the second receiver to be ready')
  assert.ok(out.includes('"msg":"ready"'), out)
  return { out: () => out, kill }
}

test('a tenant over its cap waits while another tenant\'s job passes; its jobs flow once its own finish', async (t) => {
  const [a, b] = [await tenantServer(), await tenantServer()]
  const group = TenantSlots.groupOf(a.tenantId, 'status')
  const agent = await fakeAgent(t, [group])
  const burst = await Promise.all(Array.from({ length: 4 * CAP }, async () => await p.submit(a, 'status', { deadlineMs: 30_000 })))
  await waitFor(() => agent.held(group) === CAP, 10_000, `${CAP} of A's jobs at the agent`)

  const bJob = await p.submit(b, 'status', { deadlineMs: 30_000 })
  const bDone = await p.finished(bJob.id, 10_000)
  assert.equal(bDone.state, 'succeeded')
  // B finished while A's jobs past the cap were still waiting, never sent to the agent.
  const aStates = await Promise.all(burst.map(async j => (await p.jobs.get(j.id))?.state))
  assert.equal(aStates.filter(s => s === 'queued').length, 3 * CAP, aStates.join(' '))
  assert.equal(agent.received.filter(r => r.tenantId === a.tenantId).length, CAP)
  assert.deepEqual(await slotsOf(a.tenantId), { inFlight: CAP, parked: 3 * CAP })

  agent.release(group)
  for (const j of burst) {
    const r = await p.finished(j.id, 10_000)
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error))
  }
  assert.equal(agent.received.filter(r => r.tenantId === a.tenantId).length, 4 * CAP, 'each of A\'s jobs reached the agent once')
  assert.ok(agent.maxHeld(group) <= CAP)
  assert.deepEqual(await slotsOf(a.tenantId), { inFlight: 0, parked: 0 })
})

test('power jobs count apart: a tenant at its power cap still gets its status jobs through, and its other power jobs wait', async (t) => {
  const tenant = randomUUID()
  const servers = await Promise.all(Array.from({ length: 2 * CAP }, async () => await p.addServer('ipmi', { host: '127.0.0.1', username: 'admin' }, undefined, tenant)))
  const power = TenantSlots.groupOf(tenant, 'power')
  const agent = await fakeAgent(t, [power])
  // One power job per server (the per-server rule would serialise them otherwise), twice the cap of them.
  const jobs = await Promise.all(servers.map(async s => await p.submit(s, 'power', { action: 'on', deadlineMs: 30_000 })))
  await waitFor(() => agent.held(power) === CAP, 10_000, `${CAP} power jobs at the agent`)
  const st = await p.finished((await p.submit(servers[0] as StoredServer, 'status', { deadlineMs: 30_000 })).id, 10_000)
  assert.equal(st.state, 'succeeded')
  const waiting = await Promise.all(jobs.map(async j => (await p.jobs.get(j.id))?.state))
  assert.equal(waiting.filter(x => x === 'queued').length, CAP, waiting.join(' '))
  // Parked power jobs hold no power lock: their servers are free for the job that gets the next slot.
  const locked = await Promise.all(servers.map(async s => await p.redis.get(keys(p.stack.ns).powerLock(s.id))))
  assert.equal(locked.filter(x => x !== null).length, CAP)
  agent.release(power)
  for (const j of jobs) assert.equal((await p.finished(j.id, 10_000)).state, 'succeeded')
  assert.equal(agent.maxHeld(power), CAP)
})

test('a parked power job handed a slot while its server is busy gives the slot back to the tenant\'s next job', async (t) => {
  const tenant = randomUUID()
  const fillers = await Promise.all(Array.from({ length: CAP }, async () => await p.addServer('ipmi', { host: '127.0.0.1', username: 'admin' }, undefined, tenant)))
  const [busy, other] = [await p.addServer('ipmi', { host: '127.0.0.1', username: 'admin' }, undefined, tenant), await p.addServer('ipmi', { host: '127.0.0.1', username: 'admin' }, undefined, tenant)]
  const power = TenantSlots.groupOf(tenant, 'power')
  const agent = await fakeAgent(t, [power, busy.id])
  // The tenant's power slots are all taken; then CAP jobs for one server and one for another are parked.
  for (const s of fillers) await p.submit(s, 'power', { action: 'on', deadlineMs: 30_000 })
  await waitFor(() => agent.held(power) === CAP, 10_000, `${CAP} power jobs at the agent`)
  const onBusy = []
  for (let i = 0; i < CAP; i++) onBusy.push(await p.submit(busy, 'power', { action: 'on', deadlineMs: 30_000 }))
  const onOther = await p.submit(other, 'power', { action: 'on', deadlineMs: 30_000 })
  await waitFor(async () => (await p.redis.zcard(keys(p.stack.ns).parked(power))) === CAP + 1, 10_000, 'the jobs to be parked')
  // The slots free up: the first job for the busy server runs (and is held there); the others for it must
  // wait for the server without holding a slot, so the job for the other server gets one and finishes.
  agent.release(power)
  assert.equal((await p.finished(onOther.id, 20_000)).state, 'succeeded')
  assert.ok(agent.held(busy.id) >= 1, 'a job for the busy server is running')
  agent.release(busy.id)
  for (const j of onBusy) assert.equal((await p.finished(j.id, 20_000)).state, 'succeeded')
})

test('a job that never gets a slot ends timed_out at its deadline, never dispatched', async (t) => {
  const a = await tenantServer()
  const group = TenantSlots.groupOf(a.tenantId, 'status')
  const agent = await fakeAgent(t, [group])
  for (let i = 0; i < CAP; i++) await p.submit(a, 'status', { deadlineMs: 30_000 })
  await waitFor(() => agent.held(group) === CAP, 10_000, `${CAP} of A's jobs at the agent`)
  const late = await p.submit(a, 'status', { deadlineMs: 1500 })
  const r = await p.finished(late.id, 10_000)
  assert.equal(r.state, 'timed_out')
  assert.deepEqual(states(r), ['queued', 'timed_out'])
  assert.deepEqual(r.error, { code: 'timeout', message: 'no answer by the deadline', retryable: true })
  const lateMs = Date.parse(r.updatedAt) - Date.parse(late.deadline)
  assert.ok(lateMs >= 0 && lateMs < 2000, `timed out ${lateMs} ms after the deadline`)
  assert.ok(!agent.received.some(x => x.jobId === late.id))
  assert.deepEqual(await slotsOf(a.tenantId), { inFlight: CAP, parked: 0 }, 'the timed-out job left the parked set and took no slot')
  assert.equal(await p.redis.exists(keys(p.stack.ns).parkedJob(late.id)), 0)
  agent.release(group)
})

test('two receiver replicas share one cap, and a replica killed while holding slots leaks none', async (t) => {
  const second = await secondReceiver(t)
  const a = await tenantServer()
  const group = TenantSlots.groupOf(a.tenantId, 'status')
  const agent = await fakeAgent(t, [group])
  const burst = await Promise.all(Array.from({ length: 6 * CAP }, async () => await p.submit(a, 'status', { deadlineMs: 30_000 })))
  await waitFor(() => agent.held(group) === CAP, 10_000, `${CAP} of A's jobs at the agent`)
  await waitFor(async () => (await slotsOf(a.tenantId)).parked === 5 * CAP, 10_000, 'the rest parked')
  // Both replicas took part of the burst: the second one dispatched or parked some of it.
  await waitFor(() => /"msg":"(job dispatched|tenant at its in-flight cap; job parked)"/.test(second.out()), 5000, 'a line of the second replica about a job of the burst')
  assert.equal(agent.maxHeld(group), CAP)

  await second.kill()
  agent.release(group)
  for (const j of burst) assert.equal((await p.finished(j.id, 15_000)).state, 'succeeded')
  assert.ok(agent.maxHeld(group) <= CAP)
  assert.deepEqual(await slotsOf(a.tenantId), { inFlight: 0, parked: 0 })
})

test('slots whose jobs never report an end free at their deadlines', async (t) => {
  const a = await tenantServer()
  const agent = await fakeAgent(t, [])
  // What an ended process can leave behind: slots of jobs whose end is never recorded (their records are gone).
  const leakedUntil = Date.now() + 1500
  const k = keys(p.stack.ns)
  for (let i = 0; i < CAP; i++) await p.redis.zadd(k.inFlight(TenantSlots.groupOf(a.tenantId, 'status')), leakedUntil, randomUUID())
  const job = await p.submit(a, 'status', { deadlineMs: 20_000 })
  const r = await p.finished(job.id, 10_000)
  assert.equal(r.state, 'succeeded')
  const got = agent.received.find(x => x.jobId === job.id)
  assert.ok(got !== undefined && got.at >= leakedUntil, `dispatched ${got === undefined ? 'never' : got.at - leakedUntil} ms after the leaked slots expired`)
  assert.deepEqual(await slotsOf(a.tenantId), { inFlight: 0, parked: 0 })
})

test('a parked job whose hand-off died with its receiver is handed on by another', async (t) => {
  const a = await tenantServer()
  const agent = await fakeAgent(t, [])
  // The state a receiver leaves when it dies after giving a parked job its slot, before republishing it:
  // the job queued, parked, holding a slot, with no lease; no message anywhere.
  const now = Date.now()
  const job: Job = {
    id: randomUUID(), kind: 'status', serverId: a.id, tenantId: a.tenantId, requestedBy: 'test',
    createdAt: new Date(now).toISOString(), deadline: new Date(now + 20_000).toISOString(), attempt: 1, traceId: randomUUID().replaceAll('-', '')
  }
  await p.jobs.create(job)
  const k = keys(p.stack.ns)
  const group = TenantSlots.groupOf(a.tenantId, 'status')
  await p.redis.zadd(k.inFlight(group), Date.parse(job.deadline), job.id)
  await p.redis.zadd(k.parked(group), Date.parse(job.deadline), job.id)
  await p.redis.set(k.parkedJob(job.id), JSON.stringify(job), 'PX', 60_000)
  await p.redis.sadd(k.parkedGroups, group)
  const r = await p.finished(job.id, 10_000)
  assert.equal(r.state, 'succeeded')
  assert.deepEqual(states(r), ['queued', 'dispatched', 'succeeded'])
  assert.equal(agent.received.filter(x => x.jobId === job.id).length, 1)
  assert.deepEqual(await slotsOf(a.tenantId), { inFlight: 0, parked: 0 })
  await waitFor(async () => await p.redis.sismember(k.parkedGroups, group) === 0, 5000, 'the group to leave the parked groups')
})
