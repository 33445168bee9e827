// Credentials are bound to their destination: moving where a record points needs its password again (422
// otherwise), and a record edited behind the API's back (in Redis, or on the broker) cannot send its password
// anywhere: the agent cannot open it, fails the job `auth`, and the fake destination hears nothing. Against
// the real peers: ipmi_sim, the oVirt simulator, a tiny libvirt domain's VNC through the console gateway —
// which runs without PORTHOLE_SECRET_KEY.
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { readFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { AmqpClient, names } from '@porthole/shared/amqp'
import type { Job, StoredServer } from '@porthole/contracts'
import { createLogger } from '@porthole/shared/logging'
import { JobStore, ServerStore, createRedis } from '@porthole/shared/store'
import { firstBytes, startStack, tinyDomain, waitFor, type Stack } from '@porthole/testkit'
import { startIpmiSim } from '@porthole/testkit/ipmi'
import { startOvirtSimulator } from '@porthole/testkit/ovirt'

const scope = { after: (fn: () => Promise<void>) => { after(fn) } }

const stack: Stack = await startStack(scope, { envFor: { agents: { AGENT_TYPES: 'ipmi,ovirt', IPMI_MIN_INTERVAL_MS: '20', IPMI_POLL_MS: '200' } } })
const log = createLogger({ name: 'test', level: 'silent' })
const redis = createRedis(stack.svc.redisUrl, log, 'secret-binding-test')
after(() => { redis.disconnect() })
const store = new ServerStore(redis, stack.ns)
const tenantId = (await stack.api('POST', '/v1/tenants', { name: 'acme' })).body.id as string
const customerKey = (await stack.api('POST', '/v1/api-keys', { tenantId, role: 'customer', name: 'acme-portal' })).body.key as string

/** A UDP socket that counts the datagrams it gets: a BMC the secret must never reach. */
async function fakeBmc (): Promise<{ port: number, received: () => number }> {
  const s = createSocket('udp4')
  let n = 0
  s.on('message', () => { n++ })
  await new Promise<void>(resolve => s.bind(0, '127.0.0.1', () => resolve()))
  after(() => { s.close() })
  return { port: s.address().port, received: () => n }
}

/** A TCP listener that counts connections and keeps every byte: an engine or VNC server the secret must never reach. */
async function fakeTcp (): Promise<{ port: number, connections: () => number, bytes: () => string }> {
  let n = 0
  let bytes = ''
  const server = createServer(sock => { n++; sock.on('data', (b: Buffer) => { bytes += b.toString('latin1') }); sock.on('error', () => {}) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', () => resolve()))
  after(async () => { server.close(); await new Promise(resolve => setTimeout(resolve, 0)) })
  return { port: (server.address() as AddressInfo).port, connections: () => n, bytes: () => bytes }
}

async function create (body: Record<string, unknown>): Promise<string> {
  const r = await stack.api('POST', '/v1/servers', { tenantId, name: `srv-${randomUUID().slice(0, 8)}`, ...body })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  return r.body.id as string
}

async function patch (id: string, body: Record<string, unknown>): Promise<{ status: number, body: Record<string, unknown> }> {
  return await stack.api('PATCH', `/v1/servers/${id}`, body)
}

/** Changes a stored record straight in Redis, as someone with access to Redis (not the API) could. */
/** A record as the tests tamper with it: any member of its connection, whatever its agent's schema says. */
type Tampered = StoredServer & { connection: Record<string, unknown> }

async function tamper (id: string, change: (s: Tampered) => void): Promise<void> {
  const s = await store.get(id) as Tampered
  change(s)
  await store.put(s)
}

/** The newest job of a server, as an operator sees it (the agent's own message). */
async function lastJob (id: string): Promise<{ state: string, error?: { code: string, message: string } }> {
  return await waitFor(async () => {
    const r = await stack.api('GET', `/v1/jobs?serverId=${id}`)
    const j = r.body[0]
    return j !== undefined && ['succeeded', 'failed', 'timed_out'].includes(j.state) ? j : undefined
  }, 30_000, 'the job to end')
}

test('ipmi: a PATCH moving host, port or username without the password is a 422 naming it; with it the job reaches the new BMC', async () => {
  const [a, b] = [await startIpmiSim(scope), await startIpmiSim(scope)]
  const id = await create({ agent: 'ipmi', connection: { host: a.host, port: a.port, username: a.username, password: a.password } })
  assert.equal((await stack.api('GET', `/v1/servers/${id}/status`)).status, 200)

  for (const [field, value] of [['host', 'localhost'], ['port', b.port], ['username', 'root']] as const) {
    for (const connection of [{ [field]: value }, { [field]: value, password: '******' }]) {
      const r = await patch(id, { connection })
      assert.equal(r.status, 422, JSON.stringify(r.body))
      assert.equal(r.body.field, `connection.${field}`)
      assert.equal(r.body.detail, `connection.${field} changed: send connection.password again`)
    }
  }
  assert.equal((await store.get(id) as Tampered | undefined)?.connection.port, a.port, 'a refused PATCH changed nothing')

  const before = (await b.calls()).length
  assert.equal((await patch(id, { connection: { port: b.port, password: b.password } })).status, 200)
  const st = await stack.api('GET', `/v1/servers/${id}/status`)
  assert.equal(st.status, 200, JSON.stringify(st.body))
  assert.ok((await b.calls()).length > before, 'the status was asked of the new BMC')
  // The host too: 127.1 is 127.0.0.1 written another way, a new destination all the same.
  assert.equal((await patch(id, { connection: { host: '127.1' } })).status, 422)
  assert.equal((await patch(id, { connection: { host: '127.1', password: b.password } })).status, 200)
  assert.equal((await stack.api('GET', `/v1/servers/${id}/status`)).status, 200)
  assert.ok(!stack.logs().includes(a.password) && !stack.logs().includes(b.password), 'no BMC password in a log line')
})

test('ipmi: a record pointed elsewhere in Redis, or in a job message on the broker, does not send the BMC password', async () => {
  const sim = await startIpmiSim(scope)
  const fake = await fakeBmc()
  const id = await create({ agent: 'ipmi', connection: { host: sim.host, port: sim.port, username: sim.username, password: sim.password } })
  assert.equal((await stack.api('GET', `/v1/servers/${id}/status`)).status, 200)

  await tamper(id, s => { s.connection.port = fake.port })
  const r = await stack.api('GET', `/v1/servers/${id}/status`)
  assert.ok(r.status >= 400, JSON.stringify(r.body))
  const job = await lastJob(id)
  assert.equal(job.state, 'failed')
  assert.equal(job.error?.code, 'auth')
  assert.match(job.error?.message ?? '', /connection password .* does not open/)
  assert.equal(fake.received(), 0, 'the fake BMC got a datagram')

  // On the broker: the record in Redis is right again, the copy in the message points elsewhere.
  await tamper(id, s => { s.connection.port = sim.port })
  const server = await store.get(id) as StoredServer
  const n = names(stack.ns)
  const amqp = new AmqpClient({ url: stack.svc.rabbitmqUrl, namespace: stack.ns, log, name: 'test' })
  await amqp.start()
  after(async () => { await amqp.close() })
  const jobs = new JobStore(redis, stack.ns)
  const now = Date.now()
  const msg: Job = {
    id: randomUUID(), kind: 'status', serverId: id, tenantId, requestedBy: 'test', createdAt: new Date(now).toISOString(),
    deadline: new Date(now + 20_000).toISOString(), attempt: 1, traceId: 'moved-on-the-wire'
  }
  await jobs.create(msg)
  await jobs.transition(msg.id, 'dispatched')
  await amqp.publish(n.agentsExchange, 'ipmi.interactive', { job: msg, server: { ...server, connection: { ...server.connection, port: fake.port } } })
  const rec = await waitFor(async () => { const x = await jobs.get(msg.id); return x?.state === 'failed' ? x : undefined }, 20_000, 'the job to fail')
  assert.equal(rec.error?.code, 'auth')
  assert.equal(fake.received(), 0, 'the fake BMC got a datagram')
})

test('ovirt: a PATCH moving url, username or caCert without the password is a 422; with it the job reaches the engine; a url moved in Redis reaches nothing', async () => {
  const sim = await startOvirtSimulator(scope)
  const vm = sim.addVm({ status: 'up' })
  const id = await create({ agent: 'ovirt', connection: { url: sim.url, username: sim.username, password: sim.password, vmId: vm.id, caCert: sim.caCert } })
  assert.equal((await stack.api('GET', `/v1/servers/${id}/status`)).status, 200)

  for (const [field, value] of [['url', 'https://engine.elsewhere.example/ovirt-engine'], ['username', 'admin@other'], ['caCert', `${sim.caCert}\n`]] as const) {
    const r = await patch(id, { connection: { [field]: value } })
    assert.equal(r.status, 422, JSON.stringify(r.body))
    assert.equal(r.body.field, `connection.${field}`)
  }
  assert.equal((await patch(id, { connection: { caCert: null } })).status, 422, 'dropping the CA changes where the password may go too')
  // The same engine written differently: a new destination, so the password comes along. The engine
  // forgets its tokens, so the agent must log in again with the password the PATCH sent.
  assert.equal((await patch(id, { connection: { url: `${sim.url}/`, caCert: `${sim.caCert}\n`, password: sim.password } })).status, 200)
  sim.revokeTokens()
  const tokens = sim.tokensIssued()
  assert.equal((await stack.api('GET', `/v1/servers/${id}/status`)).status, 200)
  assert.ok(sim.tokensIssued() > tokens, 'the engine was asked with the password sent again')

  const fake = await fakeTcp()
  await tamper(id, s => { s.connection.url = `https://127.0.0.1:${fake.port}/ovirt-engine` })
  assert.ok((await stack.api('GET', `/v1/servers/${id}/status`)).status >= 400)
  const job = await lastJob(id)
  assert.deepEqual([job.state, job.error?.code], ['failed', 'auth'])
  assert.equal(fake.connections(), 0, 'the fake engine got a connection')
  assert.ok(!stack.logs().includes(sim.password))
})

test('console: moving console.host or console.port needs the VNC password again; a console moved in Redis reaches nothing; the gateway holds no server key', async (t) => {
  const dom = await tinyDomain(t, { vncPassword: 'vncPw42x' })
  const bmc = await startIpmiSim(scope)
  const fake = await fakeTcp()
  const id = await create({
    agent: 'ipmi',
    connection: { host: bmc.host, port: bmc.port, username: bmc.username, password: bmc.password },
    console: { host: '127.0.0.1', port: fake.port, password: 'vncPw42x' }
  })
  const vncPort = await dom.vncPort()
  for (const console of [{ host: '127.0.0.1', port: vncPort, password: '******' }, { host: 'localhost', port: fake.port, password: '******' }]) {
    const r = await patch(id, { console })
    assert.equal(r.status, 422, JSON.stringify(r.body))
    assert.equal(r.body.field, console.port === vncPort ? 'console.port' : 'console.host')
    assert.equal(r.body.detail, `${r.body.field as string} changed: send console.password again`)
  }
  assert.equal((await patch(id, { console: { host: '127.0.0.1', port: vncPort, password: 'vncPw42x' } })).status, 200)

  const c = await stack.api('POST', `/v1/servers/${id}/console`, { protocol: 'vnc', ttlSeconds: 300 }, { key: customerKey })
  assert.equal(c.status, 201, JSON.stringify(c.body))
  // The gateway answered the VNC password challenge with the password the PATCH sent: RFB with no password.
  assert.match(await firstBytes(c.body.url as string), /^RFB 003\.00[378]\n/)
  // What the customer can list shows no target.
  const listed = await stack.api('GET', `/v1/console-sessions?serverId=${id}`, undefined, { key: customerKey })
  const jobs = await stack.api('GET', `/v1/jobs?serverId=${id}`, undefined, { key: customerKey })
  for (const r of [listed, jobs]) assert.ok(!/"(host|port|target|password)"/.test(JSON.stringify(r.body)), JSON.stringify(r.body))

  await tamper(id, s => { if (s.console !== undefined) s.console.port = fake.port })
  const moved = await stack.api('POST', `/v1/servers/${id}/console`, { protocol: 'vnc', ttlSeconds: 300 }, { key: customerKey })
  assert.ok(moved.status >= 400, JSON.stringify(moved.body))
  const job = await lastJob(id)
  assert.deepEqual([job.state, job.error?.code], ['failed', 'auth'])
  assert.match(job.error?.message ?? '', /console password .* does not open/)
  assert.equal(fake.connections(), 0, 'the fake VNC server got a connection')

  // The console worked with a gateway that has no PORTHOLE_SECRET_KEY: asked of the OS, not of our config.
  const pid = stack.procs.get('console-gateway')?.pid
  assert.ok(pid !== undefined)
  const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0')
  assert.ok(!environ.some(e => e.startsWith('PORTHOLE_SECRET_KEY') || e.startsWith('PORTHOLE_OLD_SECRET_KEYS') || e.includes(stack.secretKey)), 'the gateway was given the server credentials key')
  assert.ok(environ.includes(`CONSOLE_TRANSIT_KEY=${stack.transitKey}`))
  const agentsPid = stack.procs.get('agents')?.pid
  assert.ok((await readFile(`/proc/${agentsPid ?? 0}/environ`, 'utf8')).split('\0').includes(`PORTHOLE_SECRET_KEY=${stack.secretKey}`), 'the agents do have it (the check can fail)')
  assert.ok(!stack.logs().includes('vncPw42x') && !stack.logs().includes(bmc.password))
})

