import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { ConsoleMintRequest, compile, type ConsoleTarget, type PowerAction, type PowerJob, type StoredServer } from '@porthole/contracts'
import { SecretBox, sealServerSecrets } from '@porthole/shared/crypto'
import { keys } from '@porthole/shared/store'
import { pipeline, states, tinyDomain, waitFor, type Pipeline } from '@porthole/testkit'

const checkMint = compile(ConsoleMintRequest, 'console mint request')

// One stack (receiver + agents, no gateway) for the file; clean-ups run last first when every test is done.
const cleanups: Array<() => Promise<void>> = []
let p: Pipeline
before(async () => { p = await pipeline({ after: fn => cleanups.unshift(fn) }) })
after(async () => { for (const fn of cleanups) await fn() })

async function nextMint (jobId: string): Promise<ConsoleMintRequest> {
  const ch = await p.amqp.rawChannel()
  try {
    return await waitFor(async () => {
      const m = await ch.get(p.n.mintQueue, { noAck: true })
      if (m === false) return undefined
      const body: unknown = JSON.parse(m.content.toString('utf8'))
      return checkMint.check(body) && body.job.id === jobId ? body : undefined
    }, 10_000, 'the console mint request')
  } finally {
    await ch.close().catch(() => {})
  }
}

test('a console job sends the gateway the VNC target, sealed to the job, with its start, and leaves the job to the gateway', async (t) => {
  const vm = await tinyDomain(t, { vncPassword: 'vnc7pass' })
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name }, { console: { password: 'unused-console-secret' } })
  const job = await p.submit(server, 'console', { console: { protocol: 'vnc', ttlSeconds: 60, singleUse: false } })
  const mint = await nextMint(job.id)
  assert.deepEqual(mint.server, { id: server.id, tenantId: server.tenantId, name: server.name })
  assert.deepEqual(mint.job, job)
  assert.throws(() => p.box.open(mint.target, job.id), 'sealed with the transit key, not the server credentials key')
  const target = p.transit.open<ConsoleTarget>(mint.target, job.id)
  assert.deepEqual(target, { kind: 'vnc', host: '127.0.0.1', port: await vm.vncPort(), password: 'vnc7pass' })
  assert.throws(() => p.transit.open(mint.target, randomUUID()), 'the target opens only with its job id')
  // The gateway publishes the final update; the agent does not. Barriers instead of a pause: the agent's own
  // line that it is done with the job, then a later job on the same lane whose result the receiver recorded.
  await waitFor(() => p.stack.logLines.some(l => l.includes(job.id) && l.includes('"msg":"console target sent to the gateway"')), 10_000, 'the agent to finish the console job')
  assert.equal((await p.finished((await p.submit(server, 'status')).id)).state, 'succeeded')
  // Its start goes with the mint request (the gateway's end records it), not as an update of its own.
  const r = await p.jobs.get(job.id)
  assert.equal(r?.state, 'dispatched')
  const dispatchedAt = Date.parse(r?.history.find(h => h.state === 'dispatched')?.at ?? '')
  assert.ok(mint.startedAt !== undefined && Date.parse(mint.startedAt) >= dispatchedAt && Date.parse(mint.startedAt) <= Date.now(), `startedAt ${String(mint.startedAt)}`)
  assert.ok(!p.stack.logs().includes('vnc7pass'), 'the VNC password reached a log line')
  assert.ok(!p.stack.logs().includes('unused-console-secret'))
})

test('a console job for a VM that is off fails with conflict', async (t) => {
  const vm = await tinyDomain(t, { start: false })
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const r = await p.finished((await p.submit(server, 'console', { console: { protocol: 'vnc', ttlSeconds: 60, singleUse: false } })).id)
  assert.equal(r.state, 'failed')
  assert.equal(r.error?.code, 'conflict')
  assert.match(r.error?.message ?? '', /off/)
})

/** A power job for `server`, recorded and marked dispatched as the receiver does, but not yet sent to the agent. */
async function dispatchedJob (server: StoredServer, action: PowerAction, traceId: string, o: { ageMs?: number, deadlineMs: number }): Promise<PowerJob> {
  const now = Date.now()
  const job: PowerJob = {
    id: randomUUID(), kind: 'power', action, serverId: server.id, tenantId: server.tenantId, requestedBy: 'test',
    createdAt: new Date(now - (o.ageMs ?? 0)).toISOString(), deadline: new Date(now + o.deadlineMs).toISOString(), attempt: 1, traceId
  }
  await p.jobs.create(job)
  await p.jobs.transition(job.id, 'dispatched')
  return job
}

test('an invalid agent request is dead-lettered and its job failed', async () => {
  const server = await p.addServer('kvm', { uri: 'qemu:///system', domain: 'none' })
  const job = await dispatchedJob(server, 'off', 'invalid-request', { deadlineMs: 10_000 })
  const { createdAt: _c, ...broken } = server // a server record without createdAt
  await p.amqp.publish(p.n.agentsExchange, 'kvm', { job, server: broken })
  const r = await p.finished(job.id, 5000)
  assert.equal(r.state, 'failed')
  assert.equal(r.error?.code, 'poison')
  assert.match(r.error?.message ?? '', /createdAt/)
  await waitFor(async () => (await p.dead()).some(b => b.includes(job.id)), 5000, 'the request in the dead queue')
})

test('a good job for a record whose connection is not its agent\'s fails as invalid, is not poison, and reaches nothing', async () => {
  // Written straight into Redis past the API's checks: an ovirt engine over plain HTTP, an ipmi BMC without a host.
  const records = [
    { agent: 'ovirt' as const, connection: { url: 'http://engine.example/ovirt-engine', username: 'admin@internal', vmId: 'v1' }, member: 'url' },
    { agent: 'ipmi' as const, connection: { username: 'root' }, member: 'host' }
  ]
  for (const { agent, connection, member } of records) {
    const server = await p.addServer(agent, connection)
    const job = await dispatchedJob(server, 'on', `bad-${agent}`, { deadlineMs: 10_000 })
    // Through the kvm queue, which this pipeline's agents consume: the check comes before any driver.
    await p.amqp.publish(p.n.agentsExchange, 'kvm', { job, server })
    const r = await p.finished(job.id, 5000)
    assert.equal(r.state, 'failed', agent)
    assert.equal(r.error?.code, 'invalid', agent)
    assert.match(r.error?.message ?? '', new RegExp(`no valid ${agent} connection: ${member}: `), agent)
    assert.ok(!(await p.dead()).some(b => b.includes(job.id)), `${agent}: not dead-lettered`)
  }
})

test('a request that arrives after its deadline is not run', async (t) => {
  const vm = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const job = await dispatchedJob(server, 'off', 'late', { ageMs: 5000, deadlineMs: -1000 })
  await p.amqp.publish(p.n.agentsExchange, 'kvm', { job, server })
  const r = await p.finished(job.id, 5000)
  assert.equal(r.state, 'timed_out') // by the receiver's sweeper
  // Never running; 'dispatched' only if the sweeper (its deadline is past already) did not end it before the test marked it so.
  assert.deepEqual(states(r).filter(s => s !== 'dispatched'), ['queued', 'timed_out'])
  // A later status job through the same agent has run, so the late one was handled (and skipped) first.
  const s = await p.finished((await p.submit(server, 'status')).id)
  assert.equal(s.state, 'succeeded')
  await waitFor(() => p.stack.logLines.some(l => l.includes(`"jobId":"${job.id}"`) && l.includes('after its deadline')), 5000, 'the agent to skip the late job')
  assert.equal(await vm.state(), 'running')
})

test('server secrets sealed with another key fail the job without running it', async (t) => {
  const vm = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const other = new SecretBox('k1', new Map([['k1', randomBytes(32)]]))
  await p.servers.put({ ...server, sealed: sealServerSecrets(other, server, { connection: { password: 'x' } }), secretPaths: ['connection.password'] })
  const r = await p.finished((await p.submit(server, 'power', { action: 'off' })).id)
  assert.equal(r.state, 'failed')
  assert.equal(r.error?.code, 'auth')
  assert.equal(await vm.state(), 'running')
})

test('a redelivered request does not run its action twice: one reset, and the recorded outcome sent again', async (t) => {
  const vm = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const { virsh } = await import('@porthole/testkit')
  const before = Number(await virsh('domid', vm.name))
  const job = await dispatchedJob(server, 'reset', 'twice', { deadlineMs: 30_000 })
  // As RabbitMQ would after a lost ack: the same request twice.
  await p.amqp.publish(p.n.agentsExchange, 'kvm', { job, server })
  const r = await p.finished(job.id, 20_000)
  assert.equal(r.state, 'succeeded')
  const once = Number(await virsh('domid', vm.name))
  assert.notEqual(once, before)
  await p.amqp.publish(p.n.agentsExchange, 'kvm', { job, server })
  await waitFor(() => p.stack.logLines.some(l => l.includes(`"jobId":"${job.id}"`) && l.includes('recorded outcome again')), 10_000, 'the agent to see the redelivery')
  assert.equal(Number(await virsh('domid', vm.name)), once, 'libvirt shows a second reset')
  assert.equal(await vm.state(), 'running')
})

test('a status job is read, not claimed: no claim or outcome is kept, and a redelivery reads the state again', async (t) => {
  const vm = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const job = await p.submit(server, 'status')
  const r = await p.finished(job.id)
  assert.equal(r.state, 'succeeded')
  assert.equal(r.result !== undefined && 'power' in r.result ? r.result.power : undefined, 'on')
  const k = keys(p.stack.ns)
  assert.equal(await p.redis.exists(k.agentClaim(job.id), k.agentOutcome(job.id)), 0, 'a status job left a claim or an outcome in Redis')
  // As RabbitMQ would after a lost ack: the same request again, which reads the state again and reports it.
  await p.amqp.publish(p.n.agentsExchange, p.n.agentKeyOf('kvm', 'status'), { job, server })
  await waitFor(() => p.stack.logLines.filter(l => l.includes(`"jobId":"${job.id}"`) && l.includes('"msg":"job succeeded"')).length === 2, 10_000, 'the redelivered status job to be read again')
  assert.ok(!p.stack.logLines.some(l => l.includes(`"jobId":"${job.id}"`) && l.includes('redelivered')), 'a status job was treated as claimed')
})
