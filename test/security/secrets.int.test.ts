// Secrets stay secret: scenarios that put every kind of secret through the whole system (API keys, the
// admin token, console tokens and URLs, a libvirt VM's VNC password, a real BMC's password through ipmitool
// against ipmi_sim, the BMC's VNC password, an oVirt engine's password and its console tickets against the
// simulator, wrong passwords on the failure paths, the services' own keys), then a search for each of them
// in every service's log output (webhook secrets too) (at debug level), in `ps` output sampled every ~100 ms while the scenarios
// ran, in every API answer that is not the one meant to show it once, and in Redis.
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { mainOf, startWebhookReceiver, tinyDomain, waitFor, type ApiResponse, type Scope } from '@porthole/testkit'
import * as ipmiSims from '@porthole/testkit/ipmi'
import * as ovirtSims from '@porthole/testkit/ovirt'
import { fileStack, finished, tenant } from '../e2e/fixtures.js'
import { consoleAddress, psSampler, redisDump, secretsIn, tryViewer, vncViewer } from './support.js'


const scope: Scope = { after: (fn) => { after(fn) } }
// Sampling starts before the services do: their own command lines are searched too.
const ps = psSampler(100)
after(async () => { await ps.stop() })
// Webhooks go to a receiver of the test's on loopback.
const stack = await fileStack({ env: { LOG_LEVEL: 'debug' }, envFor: { api: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_FIRST_MS: '50' } } })

/** Every secret the scenarios use, by name. */
const secrets: Record<string, string> = {
  PORTHOLE_ADMIN_TOKEN: stack.adminToken,
  PORTHOLE_SECRET_KEY: stack.secretKey,
  CONSOLE_KEY: stack.consoleKey,
  CONSOLE_TRANSIT_KEY: stack.transitKey,
  SOL_BRIDGE_SECRET: stack.solBridgeSecret
}
/** Every API answer not meant to hold a secret. */
const answers: string[] = []

async function call (method: string, path: string, body?: unknown, o: { key?: string, showsSecretOnce?: boolean } = {}): Promise<ApiResponse> {
  const r = await stack.api(method, path, body, { key: o.key })
  if (o.showsSecretOnce !== true) answers.push(`${method} ${path} → ${r.status} ${JSON.stringify(Object.fromEntries(r.headers))} ${JSON.stringify(r.body)}`)
  return r
}

const acme = await tenant(stack, 'secrets-acme')
secrets['customer API key'] = acme.customerKey
const operator = await call('POST', '/v1/api-keys', { role: 'operator', name: 'secrets-operator' }, { showsSecretOnce: true })
assert.equal(operator.status, 201)
secrets['operator API key'] = operator.body.key

const vncPassword = randomBytes(6).toString('base64url').slice(0, 8)
secrets['VNC password'] = vncPassword
const dom = await tinyDomain(scope, { vncPassword })
const vncPort = await dom.vncPort()
assert.ok(vncPort !== undefined)

async function server (name: string, agent: string, connection: Record<string, unknown>, console?: Record<string, unknown>): Promise<string> {
  const r = await call('POST', '/v1/servers', { name, tenantId: acme.tenantId, agent, connection, ...(console === undefined ? {} : { console }) })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  return r.body.id
}

/** A console URL through the API, with its token and URL kept as secrets. */
async function consoleUrl (serverId: string, label: string, body: Record<string, unknown> = {}): Promise<string> {
  const r = await call('POST', `/v1/servers/${serverId}/console`, { ttlSeconds: 300, ...body }, { key: acme.customerKey, showsSecretOnce: true })
  assert.equal(r.status, 201, `${label}: ${JSON.stringify(r.body)}`)
  secrets[`${label} console URL`] = r.body.url
  secrets[`${label} console token`] = consoleAddress(r.body.url).token
  return r.body.url
}

async function job (serverId: string, kind: 'status' | 'power', action?: string): Promise<Record<string, unknown>> {
  const r = kind === 'status'
    ? await call('GET', `/v1/servers/${serverId}/status?wait=0`, undefined, { key: acme.customerKey })
    : await call('POST', `/v1/servers/${serverId}/power`, { action }, { key: acme.customerKey })
  assert.equal(r.status, 202, JSON.stringify(r.body))
  const rec = await finished(stack, r.body.id, acme.customerKey)
  answers.push(JSON.stringify(rec))
  // As operators see it too: agents' own messages go to them.
  answers.push(JSON.stringify((await call('GET', `/v1/jobs/${r.body.id}`, undefined, { key: operator.body.key })).body))
  return rec
}

test('kvm: a console through the VM\'s VNC password, and a status', async () => {
  const id = await server('secrets-kvm', 'kvm', { uri: dom.uri, domain: dom.name })
  assert.equal((await job(id, 'status')).state, 'succeeded')
  const v = await vncViewer(consoleAddress(await consoleUrl(id, 'kvm')))
  assert.ok(v.name.includes(dom.name))
  v.ws.close()
  await v.closed
})

test('ipmi: a real BMC (ipmi_sim) through ipmitool, its VNC console, and a wrong password', async () => {
  const bmc = await ipmiSims.startIpmiSim(scope, { power: 'on' })
  secrets['BMC password'] = bmc.password
  // The BMC's VNC endpoint is the VM's display here: the record's console password is the VM's VNC password.
  const id = await server('secrets-ipmi', 'ipmi', { host: bmc.host, port: bmc.port, username: bmc.username, password: bmc.password, cipherSuite: 3 }, { host: '127.0.0.1', port: vncPort, password: vncPassword })
  assert.equal((await job(id, 'status')).state, 'succeeded')
  assert.equal((await job(id, 'power', 'off')).state, 'succeeded')
  assert.equal(await bmc.power(), 'off', 'the simulator itself says off')
  assert.equal((await job(id, 'power', 'on')).state, 'succeeded')
  const v = await vncViewer(consoleAddress(await consoleUrl(id, 'ipmi')))
  assert.ok(v.name.includes(dom.name))
  v.ws.close()
  await v.closed

  const wrong = `wrong-${randomBytes(6).toString('hex')}`
  secrets['wrong BMC password'] = wrong
  const bad = await server('secrets-ipmi-wrong', 'ipmi', { host: bmc.host, port: bmc.port, username: bmc.username, password: wrong, cipherSuite: 3 })
  const failed = await job(bad, 'status')
  assert.equal(failed.state, 'failed')
  assert.equal((failed.error as { code: string }).code, 'auth')

  // ipmitool's command lines were seen by the sampler (so their absence of the password means something).
  await waitFor(async () => {
    if ((await ps.peek()).some(l => l.includes('ipmitool') && l.includes(String(bmc.port)))) return true
    await job(id, 'status')
    return false
  }, 60_000, 'an ipmitool command line in ps output', 0)
})

test('ovirt: the engine (simulator) with its password and a console ticket, and a wrong password', async () => {
  const sim = await ovirtSims.startOvirtSimulator(scope, { transitionMs: 100 })
  secrets['engine password'] = sim.password
  const vm = sim.addVm({ status: 'up', consoles: [{ id: 'c1', protocol: 'vnc', address: '127.0.0.1', port: vncPort }] })
  const id = await server('secrets-ovirt', 'ovirt', { url: sim.url, username: sim.username, password: sim.password, vmId: vm.id, caCert: sim.caCert })
  ovirtServer = id
  assert.equal((await job(id, 'status')).state, 'succeeded')
  const url = await consoleUrl(id, 'ovirt')
  assert.ok(sim.tickets.length >= 1, 'the agent asked the engine for a ticket')
  sim.tickets.forEach((t, i) => { secrets[`oVirt ticket ${i}`] = t.value })
  // The gateway logs in to the display with the ticket (the VM's display keeps its own password: refused).
  await tryViewer(consoleAddress(url))

  const wrong = `wrong-${randomBytes(6).toString('hex')}`
  secrets['wrong engine password'] = wrong
  const bad = await server('secrets-ovirt-wrong', 'ovirt', { url: sim.url, username: sim.username, password: wrong, vmId: vm.id, caCert: sim.caCert })
  const failed = await job(bad, 'status')
  assert.equal(failed.state, 'failed')
  assert.equal((failed.error as { code: string }).code, 'auth')
})

/** The ovirt record of the test above, for the one below. */
let ovirtServer: string | undefined

/** An HTTPS server that plays an engine and keeps every request it gets (head and body) as text. */
async function capturingEngine (): Promise<{ url: string, caCert: string, seen: () => string }> {
  const pki = await ovirtSims.makePki(scope)
  const seen: string[] = []
  const srv = https.createServer({ key: pki.key, cert: pki.cert }, (req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (d: string) => { body += d })
    req.once('end', () => {
      seen.push(`${req.method ?? ''} ${req.url ?? ''} ${JSON.stringify(req.headers)} ${body}`)
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error_code":"access_denied","error":"no"}')
    })
  })
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  scope.after(async () => { srv.closeAllConnections(); await new Promise(resolve => srv.close(resolve)) })
  return { url: `https://127.0.0.1:${(srv.address() as AddressInfo).port}/ovirt-engine`, caCert: pki.caCert, seen: () => seen.join('\n') }
}

test('a stored password never goes to an endpoint it was not given for', async () => {
  assert.ok(ovirtServer !== undefined, 'the ovirt record')
  // An operator points the record at another engine and leaves the password as stored ("******" or absent).
  const other = await capturingEngine()
  const patch = await call('PATCH', `/v1/servers/${ovirtServer}`, { connection: { url: other.url, caCert: other.caCert } }, { key: operator.body.key })
  // The password is bound to the engine it was given for: moving the record without it is refused.
  assert.equal(patch.status, 422, JSON.stringify(patch.body))
  assert.match(String(patch.body.detail), /connection\.(url|caCert)/)
  await job(ovirtServer, 'status') // the record still points at its own engine, and works there
  assert.ok(!other.seen().includes(secrets['engine password'] as string), 'the engine password reached an endpoint it was not given for')
})

test('refused requests that carry a password do not echo it', async () => {
  const pw = `refused-${randomBytes(6).toString('hex')}`
  secrets['password of a refused record'] = pw
  const r = await call('POST', '/v1/servers', { name: 'x', tenantId: acme.tenantId, agent: 'ipmi', connection: { username: 'root', password: pw } })
  assert.equal(r.status, 400)
  const p = await call('PATCH', `/v1/servers/${(await call('GET', '/v1/servers')).body[0].id}`, { connection: { password: pw, port: 'not a port' } })
  assert.equal(p.status, 400)
  for (const path of ['/v1/servers', '/v1/jobs?limit=500', '/v1/audit?limit=1000', '/v1/console-sessions', '/v1/api-keys', '/v1/tenants']) await call('GET', path)
})

test('a webhook secret is shown once: never in a listing, a delivery, a log line or Redis', async (t) => {
  const rx = await startWebhookReceiver(t)
  let calls = 0
  rx.answer = () => ++calls === 1 ? 500 : 200 // one retry, so the retry path logs too
  const w = await call('POST', '/v1/webhooks', { url: rx.url, events: ['job.succeeded'] }, { key: acme.customerKey, showsSecretOnce: true })
  assert.equal(w.status, 201, JSON.stringify(w.body))
  secrets['webhook secret'] = w.body.secret
  secrets['webhook signing key'] = String(w.body.secret).slice('whsec_'.length)
  rx.secret = w.body.secret
  const id = (await call('GET', '/v1/servers', undefined, { key: acme.customerKey })).body.find((x: { name: string }) => x.name === 'secrets-kvm').id as string
  assert.equal((await job(id, 'status')).state, 'succeeded')
  await waitFor(() => rx.received.some(x => x.answered === 200), 10_000, 'the delivery after a retry')
  assert.ok(rx.received.every(x => x.verified))
  // What the endpoint got is the signature, never the secret.
  assert.deepEqual(secretsIn(rx.received.map(x => `${x.signature} ${x.raw}`).join('\n'), secrets), [])
  for (const path of ['/v1/webhooks', `/v1/webhooks/${w.body.id as string}`, `/v1/webhooks/${w.body.id as string}/deliveries`]) {
    assert.equal((await call('GET', path, undefined, { key: acme.customerKey })).status, 200)
    await call('GET', path)
  }
})

test('no secret in any log line, any ps output sampled during the run, any API answer, or Redis', async () => {
  const lines = await ps.stop()
  assert.ok(ps.samples() >= 20, `${ps.samples()} ps samples`)
  const own = lines.filter(l => l.includes(mainOf('api')) || l.includes(mainOf('console-gateway')))
  assert.ok(own.length >= 2, "the services' own command lines were sampled")
  const logs = stack.logs()
  assert.ok(logs.split('\n').length > 100 && logs.includes('"level":20'), 'debug logs were collected')
  assert.ok(Object.keys(secrets).length >= 16, `${Object.keys(secrets).length} secrets`)
  assert.deepEqual(secretsIn(logs, secrets), [], 'secrets in log lines')
  assert.deepEqual(secretsIn(lines.join('\n'), secrets), [], 'secrets in ps output')
  assert.deepEqual(secretsIn(answers.join('\n'), secrets), [], 'secrets in API answers')
  // At rest: Redis holds passwords sealed, keys and tokens as hashes only.
  const stored = await redisDump(stack)
  assert.ok(stored.includes(acme.tenantId) && stored.length > 10_000, 'the namespace was read')
  assert.deepEqual(secretsIn(stored, secrets), [], 'secrets in Redis')
})
