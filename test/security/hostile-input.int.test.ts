// Hostile input, property-based (fast-check), generated from each route's own schemas in the running API's
// OpenAPI document: malformed, oversized, unicode, type-confused bodies, query strings and headers, and
// prototype-polluting keys. Never a 500; every error is a whole problem+json; every service is still up
// afterwards; authorization still holds; and every job the requests started ends within its deadline.
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { connect } from 'node:net'
import fc from 'fast-check'
import { sharedDir, waitFor, type Stack } from '@porthole/testkit'
import { fileStack, tenant } from '../e2e/fixtures.js'
import { hostileRequest, POLLUTED, type Auth, type HostileRequest } from './arbitraries.js'
import { operations, type Operation } from './support.js'

/** Short deadlines, so that every job the fuzzing starts has ended (or timed out) before the file does. */
const DEADLINE_SECONDS = 4
// The agents keep pools (so that a pool whose body passes validation is checked, and refused, at once).
const overlays = await sharedDir({ after: (fn) => after(fn) }, 'hostile-overlays')
const stack = await fileStack({
  envFor: {
    api: { JOB_DEADLINE_POWER_SECONDS: String(DEADLINE_SECONDS), JOB_DEADLINE_STATUS_SECONDS: String(DEADLINE_SECONDS), JOB_DEADLINE_CONSOLE_SECONDS: String(DEADLINE_SECONDS), MAX_WAIT_SECONDS: '2', WEBHOOK_DELIVERY: 'false' }, // no delivery to whatever URL the fuzzing registers
    agents: { KVM_SHUTDOWN_WAIT_MS: '1000', IPMI_SHUTDOWN_WAIT_MS: '1000', OVIRT_SHUTDOWN_WAIT_MS: '1000', POOL_OVERLAY_DIR: overlays }
  }
})
const acme = await tenant(stack, 'hostile-acme')
const globex = await tenant(stack, 'hostile-globex')
const ops = await operations(stack)

async function server (body: Record<string, unknown>): Promise<string> {
  const r = await stack.api('POST', '/v1/servers', { name: 'hostile', tenantId: acme.tenantId, ...body })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  return r.body.id
}
// Servers whose jobs end quickly: a libvirt domain that does not exist, a BMC that does not answer.
const kvm = await server({ agent: 'kvm', connection: { uri: 'qemu:///system', domain: `porthole-test-absent-${randomBytes(4).toString('hex')}` } })
const ipmi = await server({ agent: 'ipmi', connection: { host: '127.0.0.1', port: 9, username: 'admin', password: randomBytes(9).toString('base64url') } })
const foreign = (await stack.api('POST', '/v1/servers', { name: 'theirs', tenantId: globex.tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'porthole-test-theirs' } })).body.id as string
// Servers the DELETE route may remove: the others stay for the requests that follow.
const spares = await Promise.all([1, 2, 3].map(async () => await server({ agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'porthole-test-spare' } })))
const job = await stack.api('POST', `/v1/servers/${kvm}/power`, { action: 'on' })
assert.equal(job.status, 202)

const ids = fc.constantFrom(kvm, ipmi, foreign, job.body.id as string, acme.tenantId, globex.tenantId, randomUUID())
const deletable = fc.constantFrom(...spares, foreign, randomUUID())
const auth: Auth = {
  valid: fc.oneof({ weight: 3, arbitrary: fc.constant(`Bearer ${stack.adminToken}`) }, { weight: 1, arbitrary: fc.constant(`Bearer ${acme.customerKey}`) }),
  hostile: fc.constantFrom(undefined, 'Bearer', 'Bearer ', `Bearer ${stack.adminToken} extra`, `Basic ${Buffer.from('admin:admin').toString('base64')}`, `bearer ${'x'.repeat(3000)}`, 'Bearer ph_\u00ff', `Bearer ${stack.adminToken.slice(0, -1)}`)
}
/** Connections the handler takes whole, and hostile ones, per agent. */
const connection = fc.oneof(
  fc.record({ uri: fc.constantFrom('qemu:///system', 'qemu+tcp://127.0.0.1:1/system', 'qemu+ext:///system?command=/bin/sh', 'test:///default', '\u0000'), domain: fc.constantFrom('porthole-test-absent', '', '../x', 'a'.repeat(300)) }),
  fc.record({ host: fc.constantFrom('127.0.0.1', '::1', '-oProxyCommand=x', 'h\u00e9'), port: fc.constantFrom(9, 0, 70000, '623'), username: fc.constantFrom('admin', '', '-E'), password: fc.constantFrom('pw-hostile', '') }),
  fc.record({ url: fc.constantFrom('https://127.0.0.1:9/ovirt-engine', 'http://127.0.0.1/ovirt-engine', 'file:///etc/passwd'), username: fc.constant('admin@internal'), password: fc.constant('pw-hostile'), vmId: fc.constantFrom('v1', '../../x') })
)

interface Answer { status: number, type: string, text: string }

/** Sends a request and reads its answer; an event stream is cut once its headers came. */
async function send (method: string, r: HostileRequest): Promise<Answer> {
  const ac = new AbortController()
  const timer = setTimeout(() => ac.abort(), 20_000)
  try {
    const res = await fetch(stack.apiUrl + r.path, { method, headers: r.headers, ...(r.body === undefined ? {} : { body: r.body }), signal: ac.signal })
    const type = res.headers.get('content-type') ?? ''
    if (type.startsWith('text/event-stream')) { ac.abort(); return { status: res.status, type, text: '' } }
    return { status: res.status, type, text: await res.text() }
  } finally { clearTimeout(timer) }
}

/** Routes whose answer can be a failure of the job they ran (the VM, BMC or engine's), not of the request. */
const JOB_ANSWERS = new Set(['GET /v1/servers/{id}/status', 'POST /v1/servers/{id}/console'])

/** The checks every answer passes: no 500, and a whole problem for every error. */
function checkAnswer (op: Operation, r: HostileRequest, a: Answer): void {
  const what = `${op.method} ${r.path.slice(0, 200)} → ${a.status}`
  assert.notEqual(a.status, 500, `${what}: ${a.text.slice(0, 300)}`)
  if (a.status >= 500) assert.ok(JOB_ANSWERS.has(op.key) && [502, 504].includes(a.status), `${what}: ${a.text.slice(0, 300)}`)
  if (a.status < 400) return
  assert.match(a.type, /^application\/problem\+json/, `${what}: content-type ${a.type}`)
  const p = JSON.parse(a.text) as Record<string, unknown>
  for (const m of ['type', 'title', 'detail']) assert.equal(typeof p[m], 'string', `${what}: problem.${m} in ${a.text.slice(0, 300)}`)
  assert.equal(p.status, a.status, `${what}: problem.status`)
}

/** Runs per route: enough to reach every branch of the generators, few enough for the file's minute. */
const RUNS_WITH_BODY = 150
const RUNS = 50

test('hostile requests built from each route\'s schemas: never a 500, every error a whole problem', async (t) => {
  assert.ok(ops.length >= 20, 'the routes of the document')
  let served = 0
  for (const op of ops) {
    await t.test(op.key, async (st) => {
      const arb = hostileRequest(op, op.method === 'DELETE' ? deletable : ids, auth, { connection, tenantId: fc.constantFrom(acme.tenantId, globex.tenantId, randomUUID()) })
      const statuses = new Map<number, number>()
      await fc.assert(fc.asyncProperty(arb, async (r) => {
        const a = await send(op.method, r)
        statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1)
        checkAnswer(op, r, a)
      }), { numRuns: op.body === undefined ? RUNS : RUNS_WITH_BODY, endOnFailure: true })
      st.diagnostic(`answers: ${[...statuses].sort((x, y) => x[0] - y[0]).map(([k, n]) => `${k}×${n}`).join(' ')}`)
      for (const [k, n] of statuses) if (k < 300) served += n
    })
  }
  // Not all refused at the door: a good share got through validation and authorization into the handlers.
  assert.ok(served >= ops.length, `${served} requests served`)
})

test('oversized and malformed at the HTTP level: every answer a whole problem', async () => {
  const admin = { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' }
  const power = ops.find(o => o.key === 'POST /v1/servers/{id}/power') as Operation
  const cases: Array<[string, HostileRequest, string]> = [
    ['a body past the limit', { path: `/v1/servers/${kvm}/power`, headers: admin, body: JSON.stringify({ action: 'on', pad: 'x'.repeat(200_000) }) }, 'POST'],
    ['invalid UTF-8', { path: `/v1/servers/${kvm}/power`, headers: admin, body: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0xff, 0x22, 0x7d]) }, 'POST'],
    ['a route that does not exist, in unicode', { path: `/v1/${encodeURIComponent('sérvers💥')}`, headers: admin }, 'GET'],
    ['a method the route does not have', { path: `/v1/servers/${kvm}/power`, headers: admin }, 'PUT'],
    ['a server of members nobody knows', { path: '/v1/servers', headers: admin, body: '{"a":1}' }, 'POST'],
    ['a path id of a thousand characters', { path: `/v1/servers/${'a'.repeat(1000)}`, headers: admin }, 'GET'],
    ['an encoded slash in the id', { path: `/v1/servers/${kvm}%2Fpower`, headers: admin }, 'GET']
  ]
  for (const [what, r, method] of cases) {
    const a = await send(method, r)
    assert.ok(a.status >= 400 && a.status < 500, `${what}: ${a.status} ${a.text.slice(0, 200)}`)
    checkAnswer(power, r, a)
  }
  // What node's HTTP parser refuses before the app sees a request: headers past its limit, a malformed request.
  const big = await send('GET', { path: '/v1/servers', headers: { ...admin, 'x-pad': 'x'.repeat(20_000) } })
  assert.equal(big.status, 431)
  checkAnswer(power, { path: '/v1/servers', headers: {} }, big)
  const raw = await rawHttp(`GET /v1/servers HTTP/1.1\r\nHost: x\r\nthis is no header\r\n\r\n`)
  assert.match(raw, /^HTTP\/1\.1 400 /)
  assert.match(raw, /content-type: application\/problem\+json/i)
  checkAnswer(power, { path: '/v1/servers', headers: {} }, { status: 400, type: 'application/problem+json', text: raw.slice(raw.indexOf('\r\n\r\n') + 4) })
})

/** Sends bytes as they are and returns everything the API answers before it closes the connection. */
async function rawHttp (request: string): Promise<string> {
  const u = new URL(stack.apiUrl)
  return await new Promise<string>((resolve, reject) => {
    const s = connect({ host: u.hostname, port: Number(u.port) }, () => s.end(request))
    let out = ''
    s.setEncoding('utf8').on('data', (d: string) => { out += d })
    s.once('close', () => resolve(out))
    s.once('error', reject)
    s.setTimeout(10_000, () => s.destroy(new Error('no answer')))
  })
}

test('after the polluting keys, authorization still holds and nothing was planted', async () => {
  for (const path of ['/v1/tenants', '/v1/api-keys', '/v1/audit?tenantId=' + globex.tenantId]) {
    const r = await stack.api('GET', path, undefined, { key: acme.customerKey })
    if (path.startsWith('/v1/audit')) assert.deepEqual(r.body, [], 'a customer asking for another tenant\'s audit log')
    else assert.equal(r.status, 403, `${path} as a customer: ${r.status}`)
  }
  assert.equal((await stack.api('GET', `/v1/servers/${foreign}`, undefined, { key: acme.customerKey })).status, 404)
  assert.equal((await stack.api('GET', '/v1/servers', undefined, { key: 'ph_not-a-key' })).status, 401)
  for (const path of ['/v1/servers', `/v1/servers/${kvm}`, '/v1/jobs?limit=5', '/v1/tenants']) {
    const r = await stack.api('GET', path)
    assert.equal(r.status, 200)
    assert.ok(!JSON.stringify(r.body).includes(POLLUTED), `${path} shows what a polluting key planted`)
  }
})

test('every service is still up: the API ready, the gateway healthy, no process gone', async () => {
  const ready = await stack.api('GET', '/readyz', undefined, { key: null })
  assert.equal(ready.status, 200, JSON.stringify(ready.body))
  const gw = await fetch(`${stack.gatewayUrl}/healthz`)
  assert.equal(gw.status, 200)
  for (const [name, p] of stack.procs) assert.ok(p.exitCode === null && p.signalCode === null, `${name} exited (${p.exitCode ?? p.signalCode})`)
  assert.equal(stack.procs.size, 4)
})

test('every job the requests started reaches a terminal state within its deadline', async (t) => {
  const terminal = new Set(['succeeded', 'failed', 'timed_out'])
  const list = async (s: Stack): Promise<Array<{ id: string, state: string, deadline: string, history: Array<{ state: string, at: string }> }>> => {
    const r = await s.api('GET', '/v1/jobs?limit=500')
    assert.equal(r.status, 200)
    return r.body
  }
  const jobs = await list(stack)
  assert.ok(jobs.some(j => j.id === job.body.id) && jobs.length < 500, `${jobs.length} jobs: the list is whole`)
  const latest = Math.max(...jobs.map(j => Date.parse(j.deadline)))
  // Bounded by the last deadline, plus the receiver's sweep and a margin for this busy machine.
  const done = await waitFor(async () => {
    const now = await list(stack)
    return now.every(j => terminal.has(j.state)) ? now : undefined
  }, Math.max(0, latest - Date.now()) + 15_000, 'every job to end', 250)
  t.diagnostic(`${done.length} jobs: ${[...new Set(done.map(j => j.state))].join(', ')}`)
  for (const j of done) {
    const end = j.history.at(-1) as { state: string, at: string }
    // The receiver's sweep runs every 250 ms: a job ends at most a little after its deadline.
    assert.ok(Date.parse(end.at) <= Date.parse(j.deadline) + 5_000, `job ${j.id} ended ${end.state} at ${end.at}, deadline ${j.deadline}`)
  }
})
