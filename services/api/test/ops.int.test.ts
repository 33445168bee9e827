// The dashboard's server side on the real API, RabbitMQ and Redis: the login and its cookie, the session's
// life (logout, its key deleted), CSRF, the security headers, and the data routes (jobs by every filter,
// queues, dead letters looked at and replayed through real dead-lettering, agents, audit).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { names } from '@porthole/shared/amqp'
import { AgentRegistry } from '@porthole/shared/store'
import { waitFor } from '@porthole/testkit'
import { OPS_ORIGIN, apiKey, dumpNamespace, kvmServer, opsCall, opsLogin, startTestApi, tenantWithKey } from './helpers.js'

const ORIGIN = OPS_ORIGIN
const key = apiKey
const login = opsLogin
const ops = opsCall

test('the page and its scripts are served with a CSP that allows only this origin, and no framing', async (t) => {
  const api = await startTestApi(t)
  const page = await api.call('GET', '/ops', undefined, { key: null })
  assert.equal(page.status, 200)
  assert.match(String(page.headers['content-type']), /^text\/html/)
  assert.match(page.raw, /<form id="login-form"/)
  const csp = String(page.headers['content-security-policy'])
  for (const d of ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "form-action 'self'"]) assert.ok(csp.includes(d), `${d} in ${csp}`)
  assert.ok(!csp.includes('unsafe-inline'))
  assert.equal(page.headers['x-content-type-options'], 'nosniff')
  assert.equal(page.headers['referrer-policy'], 'no-referrer')
  assert.doesNotMatch(page.raw, /<script>|\son[a-z]+="/, 'no inline script or handler for the CSP to refuse')
  const js = await api.call('GET', '/ops/assets/ops.js', undefined, { key: null })
  assert.equal(js.status, 200)
  assert.match(String(js.headers['content-type']), /^text\/javascript/)
  assert.equal((await api.call('GET', '/ops/assets/..%2Fpackage.json', undefined, { key: null })).status, 404)
})

test('login: an operator key becomes an HttpOnly, SameSite=Strict cookie; customers, bad keys and other origins are refused', async (t) => {
  const api = await startTestApi(t)
  const acme = await tenantWithKey(api)
  const operator = await key(api, 'operator')
  assert.equal((await api.call('POST', '/ops/login', { key: acme.key }, { key: null, headers: { origin: ORIGIN } })).status, 403, 'customer keys are not for the dashboard')
  assert.equal((await api.call('POST', '/ops/login', { key: 'ph_nope' }, { key: null, headers: { origin: ORIGIN } })).status, 401)
  const cross = await api.call('POST', '/ops/login', { key: operator.key }, { key: null, headers: { origin: 'https://evil.example' } })
  assert.equal(cross.status, 403, 'a page of another site cannot log a browser in')
  assert.equal(cross.headers['set-cookie'], undefined)
  assert.equal((await api.call('POST', '/ops/login', { key: operator.key }, { key: null })).status, 403, 'no Origin, no login')
  const s = await login(api, operator.key)
  assert.match(s.setCookie, /^porthole_ops=[\w-]{43}; Path=\/ops; Max-Age=28800; HttpOnly; SameSite=Strict$/, 'no Secure over plain http')
  const me = await ops(api, s, 'GET', '/ops/api/session')
  assert.equal(me.status, 200, me.raw)
  assert.equal(me.body.role, 'operator')
  assert.equal(me.body.keyId, operator.id)
  assert.equal(me.body.csrf, s.csrf)
  // Redis holds the token's hash, never the token or the key.
  const dump = await dumpNamespace(api.redis, api.ns)
  assert.ok(!dump.includes(s.cookie.split('=')[1] as string))
  assert.ok(!dump.includes(operator.key))
  // The session is the only credential of /ops/api: a bearer key is not one.
  assert.equal((await api.call('GET', '/ops/api/session', undefined, { key: operator.key })).status, 401)
  assert.equal((await api.call('GET', '/ops/api/jobs', undefined, { key: null })).status, 401)
  for (const path of ['/ops/%61pi/jobs', '/ops//api/jobs', '/ops/api/jobs/', '/OPS/api/jobs']) {
    const r = await api.call('GET', path, undefined, { key: null })
    assert.ok(r.status === 401 || r.status === 404, `${path}: ${r.status} ${r.raw.slice(0, 100)}`)
  }
})

test('behind a TLS-terminating proxy the cookie is Secure', async (t) => {
  const api = await startTestApi(t, { env: { TRUST_PROXY: 'true' } })
  const s = await login(api, api.adminToken, { origin: 'https://localhost:80', 'x-forwarded-proto': 'https' })
  assert.match(s.setCookie, /; HttpOnly; SameSite=Strict; Secure$/)
})

test('changes need the CSRF token and this Origin; logout and deleting the key end the session', async (t) => {
  const api = await startTestApi(t)
  const acme = await tenantWithKey(api)
  const serverId = await kvmServer(api, acme.tenantId)
  const operator = await key(api, 'operator')
  const s = await login(api, operator.key)
  const job = (await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'off' })).body
  const noToken = await api.call('POST', `/ops/api/jobs/${job.id as string}/cancel`, undefined, { key: null, headers: { cookie: s.cookie, origin: ORIGIN } })
  assert.equal(noToken.status, 403)
  assert.match(noToken.body.detail, /X-CSRF-Token/)
  assert.equal((await ops(api, s, 'POST', `/ops/api/jobs/${job.id as string}/cancel`, undefined, { 'x-csrf-token': 'x'.repeat(43) })).status, 403)
  assert.equal((await ops(api, s, 'POST', `/ops/api/jobs/${job.id as string}/cancel`, undefined, { origin: 'https://evil.example' })).status, 403)
  assert.equal((await api.jobs.get(job.id))?.state, 'queued', 'nothing changed')
  const ok = await ops(api, s, 'POST', `/ops/api/jobs/${job.id as string}/cancel`)
  assert.equal(ok.status, 200, ok.raw)
  assert.equal(ok.body.state, 'cancelled')
  const audit = (await api.call('GET', `/v1/audit?serverId=${serverId}`)).body as Array<{ action: string, actor: string }>
  assert.ok(audit.some(e => e.action === 'job.power.cancel' && e.actor === operator.id), 'audited as the operator')

  const out = await ops(api, s, 'POST', '/ops/api/logout')
  assert.equal(out.status, 204)
  assert.match(String(out.headers['set-cookie']), /^porthole_ops=; Path=\/ops; Max-Age=0/)
  assert.equal((await ops(api, s, 'GET', '/ops/api/session')).status, 401, 'logged out')

  const again = await login(api, operator.key)
  assert.equal((await ops(api, again, 'GET', '/ops/api/session')).status, 200)
  assert.equal((await api.call('DELETE', `/v1/api-keys/${operator.id}`)).status, 204)
  assert.equal((await ops(api, again, 'GET', '/ops/api/session')).status, 401, 'a deleted key ends its dashboard sessions')
})

test('jobs: filtered by state, kind, agent, tenant and server, searched by job or server id, with the server named', async (t) => {
  const api = await startTestApi(t)
  const acme = await tenantWithKey(api, 'acme')
  const other = await tenantWithKey(api, 'other')
  const kvm = await kvmServer(api, acme.tenantId, 'web-1')
  const bmc = (await api.call('POST', '/v1/servers', { name: 'db-1', tenantId: other.tenantId, agent: 'ipmi', connection: { host: '10.1.2.3', username: 'u', password: 'p4ssw0rd!' } })).body.id as string
  const a = (await api.call('POST', `/v1/servers/${kvm}/power`, { action: 'reboot' })).body
  const b = (await api.call('POST', `/v1/servers/${bmc}/power`, { action: 'on' })).body
  const c = (await api.call('GET', `/v1/servers/${kvm}/status?wait=0`)).body
  await api.jobs.transition(b.id, 'failed', { error: { code: 'auth', message: 'BMC 10.1.2.3 refused the credentials', retryable: false } })
  const s = await login(api, api.adminToken)
  const ids = async (q: string): Promise<string[]> => {
    const r = await ops(api, s, 'GET', `/ops/api/jobs?${q}`)
    assert.equal(r.status, 200, r.raw)
    return (r.body as Array<{ id: string }>).map(j => j.id).sort()
  }
  assert.deepEqual(await ids(''), [a.id, b.id, c.id].sort())
  assert.deepEqual(await ids('agent=ipmi'), [b.id])
  assert.deepEqual(await ids('agent=kvm'), [a.id, c.id].sort())
  assert.deepEqual(await ids('state=failed'), [b.id])
  assert.deepEqual(await ids('kind=status'), [c.id])
  assert.deepEqual(await ids(`tenantId=${other.tenantId}`), [b.id])
  assert.deepEqual(await ids(`serverId=${kvm}`), [a.id, c.id].sort())
  assert.deepEqual(await ids(`q=${b.id}`), [b.id])
  assert.deepEqual(await ids(`q=${kvm}`), [a.id, c.id].sort())
  assert.deepEqual(await ids(`q=${randomUUID()}`), [])
  assert.equal((await ops(api, s, 'GET', '/ops/api/jobs?q=web-1')).status, 400)
  const one = await ops(api, s, 'GET', `/ops/api/jobs/${b.id as string}`)
  assert.equal(one.body.serverName, 'db-1')
  assert.equal(one.body.agent, 'ipmi')
  assert.equal(one.body.error.message, 'BMC 10.1.2.3 refused the credentials', 'operators read the agent\'s own message')
  assert.ok(!one.raw.includes('p4ssw0rd!'))
  // Retry from the dashboard: a new job linked to the failed one.
  const retry = await ops(api, s, 'POST', `/ops/api/jobs/${b.id as string}/retry`)
  assert.equal(retry.status, 201, retry.raw)
  assert.equal(retry.body.retryOf, b.id)
  const servers = await ops(api, s, 'GET', '/ops/api/servers')
  assert.ok(!servers.raw.includes('p4ssw0rd!') && !servers.raw.includes('10.1.2.3'), 'names and agents only')
})

test('queues from passive declares; dead letters listed without being taken, and replayed to the queue they came from', async (t) => {
  const api = await startTestApi(t)
  const s = await login(api, api.adminToken)
  const n = names(api.ns)
  const q = await ops(api, s, 'GET', '/ops/api/queues')
  assert.equal(q.status, 200, q.raw)
  assert.equal(q.body.source, 'passive')
  const receiver = (q.body.queues as Array<{ queue: string, messages: number, consumers: number }>).find(x => x.queue === n.receiverInteractiveQueue)
  assert.deepEqual(receiver, { queue: n.receiverInteractiveQueue, messages: 0, consumers: 0 })

  // A real dead letter: a job message that expires in its queue with nobody consuming it.
  const ch = await api.deps.amqp.rawChannel()
  t.after(async () => { await ch.close().catch(() => {}) })
  const jobId = randomUUID()
  const body = { id: jobId, kind: 'status', serverId: randomUUID(), tenantId: randomUUID(), requestedBy: 'test', createdAt: new Date().toISOString(), deadline: new Date(Date.now() + 60_000).toISOString(), attempt: 1, traceId: 'x' }
  ch.sendToQueue(n.receiverInteractiveQueue, Buffer.from(JSON.stringify(body)), { messageId: jobId, expiration: '1', persistent: true })
  const listed = await waitFor(async () => {
    const r = await ops(api, s, 'GET', '/ops/api/dead-letters')
    return (r.body as Array<{ messageId: string }>).find(d => d.messageId === jobId)
  }, 10_000, 'the expired message in the dead letters')
  const { deadAt, ...rest } = listed as typeof listed & { deadAt?: string }
  assert.ok(deadAt !== undefined && Math.abs(Date.parse(deadAt) - Date.now()) < 3_600_000, `deadAt ${String(deadAt)}: when it was dead-lettered`)
  assert.deepEqual(rest, { lane: 'dead.interactive', messageId: jobId, originalQueue: n.receiverInteractiveQueue, reason: 'expired', deaths: 1, jobId, kind: 'status', serverId: body.serverId, tenantId: body.tenantId, type: 'job' })
  const again = await ops(api, s, 'GET', '/ops/api/dead-letters')
  assert.equal((again.body as Array<{ messageId: string }>).filter(d => d.messageId === jobId).length, 1, 'looking does not take it')

  const replay = await ops(api, s, 'POST', '/ops/api/dead-letters/replay', { lane: 'dead.interactive', messageId: jobId })
  assert.equal(replay.status, 200, replay.raw)
  const back = await waitFor(async () => { const m = await ch.get(n.receiverInteractiveQueue, { noAck: true }); return m === false ? undefined : m }, 10_000, 'the replayed message in its queue')
  assert.equal(back.properties.messageId, jobId)
  assert.deepEqual(JSON.parse(back.content.toString()), body)
  assert.equal(((await ops(api, s, 'GET', '/ops/api/dead-letters')).body as Array<{ messageId: string }>).filter(d => d.messageId === jobId).length, 0, 'gone from the dead letters')
  assert.equal((await ops(api, s, 'POST', '/ops/api/dead-letters/replay', { lane: 'dead.interactive', messageId: jobId })).status, 404)
  const audit = (await api.call('GET', '/v1/audit')).body as Array<{ action: string, jobId?: string }>
  assert.ok(audit.some(e => e.action === 'dead-letter.replay' && e.jobId === jobId))
})

test('agents: heartbeats listed with their types, jobs in flight and last contact; a stopped one shows as gone', async (t) => {
  const api = await startTestApi(t)
  const s = await login(api, api.adminToken)
  const reg = new AgentRegistry(api.redis, api.ns)
  const at = new Date().toISOString()
  await reg.beat({ instance: 'host-a/10/1', host: 'host-a', pid: 10, types: ['kvm', 'ipmi'], startedAt: at, at, inFlight: [randomUUID()], done: 7 }, 15)
  await reg.beat({ instance: 'host-b/11/1', host: 'host-b', pid: 11, types: ['ovirt'], startedAt: at, at, inFlight: [], done: 0 }, 15)
  await reg.gone('host-b/11/1')
  const r = await ops(api, s, 'GET', '/ops/api/agents')
  assert.equal(r.status, 200, r.raw)
  const byId = new Map((r.body.instances as Array<{ instance: string, alive: boolean, done: number, types: string[] }>).map(i => [i.instance, i]))
  assert.equal(byId.get('host-a/10/1')?.alive, true)
  assert.equal(byId.get('host-a/10/1')?.done, 7)
  assert.equal(byId.get('host-b/11/1')?.alive, false)
  const kvm = (r.body.types as Array<{ type: string, instances: number }>).find(x => x.type === 'kvm')
  assert.equal(kvm?.instances, 1)
  assert.equal((r.body.types as Array<{ type: string, instances: number }>).find(x => x.type === 'ovirt')?.instances, 0)
})

test('audit on the dashboard takes the API\'s filters', async (t) => {
  const api = await startTestApi(t)
  const acme = await tenantWithKey(api, 'acme')
  const other = await tenantWithKey(api, 'other')
  const x = await kvmServer(api, acme.tenantId, 'x')
  const y = await kvmServer(api, other.tenantId, 'y')
  await api.call('POST', `/v1/servers/${x}/power`, { action: 'on' })
  await api.call('POST', `/v1/servers/${y}/power`, { action: 'off' })
  const s = await login(api, api.adminToken)
  const byServer = (await ops(api, s, 'GET', `/ops/api/audit?serverId=${y}`)).body as Array<{ serverId?: string, action: string }>
  assert.ok(byServer.length > 0 && byServer.every(e => e.serverId === y))
  const byTenant = (await ops(api, s, 'GET', `/ops/api/audit?tenantId=${acme.tenantId}&limit=1`)).body as Array<{ tenantId?: string }>
  assert.equal(byTenant.length, 1)
  assert.equal(byTenant[0]?.tenantId, acme.tenantId)
  assert.equal((await ops(api, s, 'GET', '/ops/api/audit?limit=0')).status, 400)
})

test('the page\'s event stream carries job changes, and ends when the session\'s key is deleted', async (t) => {
  const api = await startTestApi(t, { env: { SSE_HEARTBEAT_SECONDS: '1' } })
  const acme = await tenantWithKey(api)
  const serverId = await kvmServer(api, acme.tenantId)
  const operator = await key(api, 'operator')
  const s = await login(api, operator.key)
  await api.app.listen({ port: 0, host: '127.0.0.1' })
  const addr = api.app.server.address()
  const url = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}/ops/api/events`
  const ac = new AbortController()
  t.after(() => ac.abort())
  const res = await fetch(url, { headers: { cookie: s.cookie }, signal: ac.signal })
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/)
  let text = ''
  let ended = false
  const reading = (async () => {
    const decoder = new TextDecoder()
    try { for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) text += decoder.decode(c, { stream: true }) } catch { /* aborted */ }
    ended = true
  })()
  await waitFor(() => text.includes(': connected'), 5000, 'the stream to open')
  const job = (await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'reset' }, { key: acme.key })).body
  await waitFor(() => text.includes(`"jobId":"${job.id as string}"`) && text.includes('"state":"queued"'), 5000, 'the job event')
  assert.match(text, /event: job\ndata: \{/)
  assert.equal((await fetch(url)).status, 401, 'no cookie, no stream')
  assert.equal((await api.call('DELETE', `/v1/api-keys/${operator.id}`)).status, 204)
  await waitFor(() => ended, 10_000, 'the stream to end with its key')
  await reading
  assert.match(text, /event: end/)
})
