import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Job, compile, isUuid, type ConsoleResult } from '@porthole/contracts'
import { SecretBox } from '@porthole/shared/crypto'
import { keys, urlHandoverAad } from '@porthole/shared/store'
import { waitFor, within } from '@porthole/testkit'
import { consumeJobs, dumpNamespace, startTestApi, tenantWithKey, type TestApi } from './helpers.js'

const checkJob = compile(Job, 'job')
const PASSWORD = 'ipmi-Pw-77!'

async function ipmiServer (api: TestApi, tenantId: string): Promise<string> {
  const r = await api.call('POST', '/v1/servers', { name: 'bmc', tenantId, agent: 'ipmi', connection: { host: '10.9.9.9', username: 'root', password: PASSWORD }, console: { host: '10.9.9.9', port: 5900, password: 'vncpw' } })
  assert.equal(r.status, 201)
  return r.body.id
}

test('a power job is recorded, published to <ns>.jobs.receiver after the confirm, and carries no secret', async (t) => {
  const api = await startTestApi(t)
  const { tenantId, key, keyId } = await tenantWithKey(api)
  const serverId = await ipmiServer(api, tenantId)
  const seen = await consumeJobs(api)
  const r = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'reboot' }, { key })
  assert.equal(r.status, 202)
  assert.equal(r.headers.location, `/v1/jobs/${r.body.id as string}`)
  assert.equal(r.body.state, 'queued')
  assert.equal(r.body.kind, 'power')
  assert.equal(r.body.action, 'reboot')
  await waitFor(() => seen.length === 1, 5000, 'the job message')
  const msg = seen[0]
  assert.ok(checkJob.check(msg), JSON.stringify(msg))
  assert.equal(msg.id, r.body.id)
  assert.equal(msg.serverId, serverId)
  assert.equal(msg.tenantId, tenantId)
  assert.equal(msg.requestedBy, keyId)
  assert.equal(msg.attempt, 1)
  assert.ok(Date.parse(msg.deadline) - Date.parse(msg.createdAt) === api.config.JOB_DEADLINE_POWER_SECONDS * 1000)
  const text = JSON.stringify(msg)
  assert.ok(!text.includes(PASSWORD) && !text.includes('vncpw') && !text.includes(key), 'no secret in the message')
  const rec = await api.call('GET', `/v1/jobs/${r.body.id as string}`, undefined, { key })
  assert.equal(rec.body.state, 'queued')
  const listed = await api.call('GET', `/v1/jobs?serverId=${serverId}&kind=power&state=queued`, undefined, { key })
  assert.deepEqual(listed.body.map((j: { id: string }) => j.id), [r.body.id])
  assert.deepEqual((await api.call('GET', `/v1/jobs?serverId=${serverId}&kind=status`, undefined, { key })).body, [])
})

test('unknown action, unknown server, bad wait', async (t) => {
  const api = await startTestApi(t)
  const { tenantId } = await tenantWithKey(api)
  const serverId = await ipmiServer(api, tenantId)
  const bad = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'explode' })
  assert.equal(bad.status, 400)
  assert.equal(bad.body.field, 'action')
  assert.match(bad.body.detail, /on, off, shutdown, reboot, reset, suspend, resume/)
  assert.equal((await api.call('POST', `/v1/servers/${crypto.randomUUID()}/power`, { action: 'on' })).status, 404)
  const tooLong = await api.call('POST', `/v1/servers/${serverId}/power?wait=${api.config.MAX_WAIT_SECONDS + 1}`, { action: 'on' })
  assert.equal(tooLong.status, 400)
  assert.equal(tooLong.body.field, 'wait')
  assert.deepEqual((await api.call('GET', '/v1/jobs')).body, [], 'no job was created by a bad request')
})

test('?wait: power answers 200 with the finished job, or 202 when it is not finished in time', async (t) => {
  const api = await startTestApi(t)
  const { tenantId, key } = await tenantWithKey(api)
  const serverId = await ipmiServer(api, tenantId)
  let outcome: 'succeed' | 'fail' | 'hang' = 'succeed'
  await consumeJobs(api, async (body) => {
    const id = (body as { id: string }).id
    if (outcome === 'hang') return
    await api.jobs.transition(id, 'dispatched')
    await api.jobs.transition(id, 'running')
    // It ends at once: whether that comes before or after the API starts waiting, the answer must carry it.
    if (outcome === 'succeed') await api.jobs.transition(id, 'succeeded', { result: { power: 'on', checkedAt: new Date().toISOString() } })
    else await api.jobs.transition(id, 'failed', { error: { code: 'auth', message: 'BMC refused the credentials', retryable: false } })
  })

  // The longest wait allowed, bounded at half of it: an answer within the bound came on the event, not at
  // the end of the wait.
  const longest = api.config.MAX_WAIT_SECONDS
  const ok = await within(api.call('POST', `/v1/servers/${serverId}/power?wait=${longest}`, { action: 'on' }, { key }), longest * 500, 'the answer on the job\'s event, long before the end of the wait')
  assert.equal(ok.status, 200)
  assert.equal(ok.body.state, 'succeeded')
  assert.equal(ok.body.result.power, 'on')
  assert.deepEqual(ok.body.history.map((h: { state: string }) => h.state), ['queued', 'dispatched', 'running', 'succeeded'])

  outcome = 'fail'
  const failed = await api.call('POST', `/v1/servers/${serverId}/power?wait=10`, { action: 'off' }, { key })
  assert.equal(failed.status, 200, 'the failed job is the resource')
  assert.equal(failed.body.state, 'failed')
  assert.equal(failed.body.error.code, 'auth')

  outcome = 'hang'
  const t0 = Date.now()
  const pending = await api.call('POST', `/v1/servers/${serverId}/power?wait=1`, { action: 'off' }, { key })
  assert.equal(pending.status, 202)
  assert.equal(pending.headers.location, `/v1/jobs/${pending.body.id as string}`)
  assert.ok(Date.now() - t0 >= 950, 'it waited the second it was asked to (a minimum, which a slower machine only lengthens)')
})

test('status waits for the job and answers {power, checkedAt}; a failure is the mapped problem with the job id', async (t) => {
  const api = await startTestApi(t)
  const { tenantId, key } = await tenantWithKey(api)
  const serverId = await ipmiServer(api, tenantId)
  const checkedAt = new Date().toISOString()
  let fail: { code: 'conflict' | 'connection' | 'unsupported' | 'timeout', message: string, retryable: boolean } | 'timed_out' | undefined
  await consumeJobs(api, async (body) => {
    const id = (body as { id: string }).id
    if (fail === 'timed_out') await api.jobs.transition(id, 'timed_out')
    else if (fail !== undefined) await api.jobs.transition(id, 'failed', { error: fail })
    else await api.jobs.transition(id, 'succeeded', { result: { power: 'off', checkedAt } })
  })
  const ok = await api.call('GET', `/v1/servers/${serverId}/status`, undefined, { key })
  assert.equal(ok.status, 200)
  assert.deepEqual(ok.body, { power: 'off', checkedAt })

  const expect: Array<[typeof fail, number]> = [
    [{ code: 'connection', message: 'BMC 10.9.9.9 not reachable', retryable: true }, 502],
    [{ code: 'unsupported', message: 'no such thing', retryable: false }, 422],
    ['timed_out', 504]
  ]
  for (const [f, status] of expect) {
    fail = f
    const r = await api.call('GET', `/v1/servers/${serverId}/status`, undefined, { key })
    assert.equal(r.status, status)
    assert.match(String(r.headers['content-type']), /^application\/problem\+json/)
    assert.ok(isUuid(r.body.jobId), r.body.jobId)
    const job = await api.call('GET', `/v1/jobs/${r.body.jobId as string}`, undefined, { key })
    assert.equal(job.body.kind, 'status')
  }
  const queued = await api.call('GET', `/v1/servers/${serverId}/status?wait=0`, undefined, { key })
  assert.equal(queued.status, 202)
})

test('console: 201 with the grant and the session Location; ?wait=0 gives the job; failures are problems', async (t) => {
  const api = await startTestApi(t)
  const { tenantId, key } = await tenantWithKey(api)
  const serverId = await ipmiServer(api, tenantId)
  const messages: Array<{ id: string, console?: unknown }> = []
  const box = SecretBox.forConsoleTransit({ CONSOLE_TRANSIT_KEY: api.transitKey, CONSOLE_TRANSIT_KEY_ID: api.config.CONSOLE_TRANSIT_KEY_ID, CONSOLE_OLD_TRANSIT_KEYS: '' })
  let fail = false
  await consumeJobs(api, async (body) => {
    const job = body as { id: string, console?: unknown }
    messages.push(job)
    if (fail) { await api.jobs.transition(job.id, 'failed', { error: { code: 'conflict', message: 'the server is off', retryable: false } }); return }
    // As the gateway does: the URL goes into a sealed one-time hand-over, the job result has no URL.
    await api.redis.set(keys(api.ns).consoleUrlHandover(job.id), JSON.stringify(box.seal('http://gw.example/s/x#tok', urlHandoverAad(job.id))), 'EX', 60)
    const result: ConsoleResult = { sessionId: crypto.randomUUID(), protocol: 'vnc', expiresAt: new Date(Date.now() + 3600_000).toISOString() }
    await api.jobs.transition(job.id, 'succeeded', { result })
  })
  const r = await api.call('POST', `/v1/servers/${serverId}/console`, undefined, { key })
  assert.equal(r.status, 201)
  assert.equal(r.headers.location, `/v1/console-sessions/${r.body.sessionId as string}`)
  assert.equal(r.body.url, 'http://gw.example/s/x#tok')
  assert.deepEqual(Object.keys(r.body).sort(), ['expiresAt', 'protocol', 'sessionId', 'url'])
  // The URL is shown once: the job record never holds it, and Redis keeps no copy once delivered.
  const jobs = await api.call('GET', '/v1/jobs?kind=console', undefined, { key })
  assert.ok(!JSON.stringify(jobs.body).includes('#tok'))
  assert.ok(!(await dumpNamespace(api.redis, api.ns)).includes('#tok'))
  assert.deepEqual(messages[0]?.console, { protocol: 'vnc', ttlSeconds: 7200, singleUse: false, renewable: false, maxTotalSeconds: 28_800 })

  await api.call('POST', `/v1/servers/${serverId}/console`, { protocol: 'guacamole', ttlSeconds: 60, singleUse: true }, { key })
  assert.deepEqual(messages[1]?.console, { protocol: 'guacamole', ttlSeconds: 60, singleUse: true, renewable: false, maxTotalSeconds: 28_800 })
  assert.equal((await api.call('POST', `/v1/servers/${serverId}/console`, { ttlSeconds: 7201 }, { key })).body.field, 'ttlSeconds')

  fail = true
  const conflict = await api.call('POST', `/v1/servers/${serverId}/console`, {}, { key })
  assert.equal(conflict.status, 409)
  assert.equal(conflict.body.code, 'conflict')
  // a customer reads the fixed sentence of the code, not the agent's message (customer-view.int.test.ts)
  assert.equal(conflict.body.detail, 'the server refused the request in its current state')
  assert.ok(conflict.body.jobId)

  fail = false
  const noWait = await api.call('POST', `/v1/servers/${serverId}/console?wait=0`, {}, { key })
  assert.equal(noWait.status, 202)
  assert.equal(noWait.body.kind, 'console')
  assert.equal(noWait.body.protocol, 'vnc')
  // Polling: the requester gets the URL once from the job, another key of the same tenant never does.
  const other = await api.call('POST', '/v1/api-keys', { tenantId, role: 'customer', name: 'other' })
  const done = await waitFor(async () => { const j = await api.call('GET', `/v1/jobs/${noWait.body.id as string}`, undefined, { key: other.body.key }); return j.body.state === 'succeeded' ? j : undefined }, 5000, 'console job')
  assert.equal(done.body.result.url, undefined)
  const first = await api.call('GET', `/v1/jobs/${noWait.body.id as string}`, undefined, { key })
  assert.equal(first.body.result.url, 'http://gw.example/s/x#tok')
  const again = await api.call('GET', `/v1/jobs/${noWait.body.id as string}`, undefined, { key })
  assert.equal(again.body.result.url, undefined)
})

test('Idempotency-Key: a repeat with the same API key returns the first job and publishes nothing', async (t) => {
  const api = await startTestApi(t)
  const a = await tenantWithKey(api, 'a')
  const serverId = await ipmiServer(api, a.tenantId)
  const seen = await consumeJobs(api)
  const headers = { 'idempotency-key': 'order-4711' }
  const first = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' }, { key: a.key, headers })
  const second = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' }, { key: a.key, headers })
  assert.equal(first.status, 202)
  assert.equal(second.status, 202)
  assert.equal(second.body.id, first.body.id)
  assert.equal(second.headers['idempotent-replayed'], 'true')
  // another API key with the same Idempotency-Key is another request
  const other = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' }, { headers })
  assert.notEqual(other.body.id, first.body.id)
  await waitFor(() => seen.length === 2, 5000, 'two messages')
  // No fixed pause for "nothing more comes": a later job on the same queue, once it arrived, proves that no
  // duplicate was published before it.
  const barrierServer = await ipmiServer(api, a.tenantId)
  const barrier = async (): Promise<void> => {
    const b = await api.call('POST', `/v1/servers/${barrierServer}/power`, { action: 'on' }, { key: a.key })
    assert.equal(b.status, 202)
    await waitFor(() => seen.some(m => (m as { id: string }).id === b.body.id), 5000, 'the barrier job')
  }
  await barrier()
  assert.equal(seen.length, 3)
  assert.equal((await api.call('GET', `/v1/jobs?serverId=${serverId}`)).body.length, 2)
  // the same key for a different request is refused, not answered with the first job
  const reused = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'off' }, { key: a.key, headers })
  assert.equal(reused.status, 422)
  assert.equal(reused.body.jobId, first.body.id)
  const onConsole = await api.call('POST', `/v1/servers/${serverId}/console`, {}, { key: a.key, headers })
  assert.equal(onConsole.status, 422)
  await barrier()
  assert.equal(seen.length, 4, 'the refused requests published nothing')
})
