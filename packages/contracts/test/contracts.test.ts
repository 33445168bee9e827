import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { compile, connectionProblem, isUuid, Job, jobIdOf, JobUpdate, resultProblem, StoredServer, toServerView, MASK, splitSecrets } from '../src/index.js'
import { ValidationError } from '../src/errors.js'

const job = () => ({
  id: randomUUID(), kind: 'power', serverId: randomUUID(), tenantId: randomUUID(), action: 'off', requestedBy: 'k',
  createdAt: new Date().toISOString(), deadline: new Date(Date.now() + 1000).toISOString(), attempt: 1, traceId: 't'
})

test('a valid job passes and a bad one names the field', () => {
  const c = compile(Job, 'job')
  assert.equal(c.check(job()), true)
  assert.throws(() => c.parse({ ...job(), action: 'explode' }), (e: unknown) => e instanceof ValidationError && /action/.test(e.message))
  assert.throws(() => c.parse({ ...job(), deadline: 'tomorrow' }), (e: unknown) => e instanceof ValidationError && e.details?.field === 'deadline')
  assert.throws(() => c.parse({ ...job(), password: 'x' }), ValidationError) // no extra members, no smuggled secrets
  assert.throws(() => c.parse({ ...job(), id: 'not-a-uuid' }), ValidationError)
})

test('a job update must carry a known state and error code', () => {
  const c = compile(JobUpdate, 'update')
  const base = { jobId: randomUUID(), at: new Date().toISOString() }
  assert.equal(c.check({ ...base, state: 'failed', error: { code: 'auth', message: 'no', retryable: false } }), true)
  assert.equal(c.check({ ...base, state: 'failed', error: { code: 'oops', message: 'no', retryable: false } }), false)
  assert.equal(c.check({ ...base, state: 'queued' }), false)
})

test('server views mask every secret and keep the rest', () => {
  const { pub, password } = splitSecrets({ host: 'bmc', username: 'root', password: 'pw' })
  assert.equal(password, 'pw')
  const s = {
    id: randomUUID(), tenantId: randomUUID(), name: 'n', agent: 'ipmi' as const, connection: pub as { host: string, username: string }, console: { host: 'bmc', port: 5901 },
    secretPaths: ['connection.password' as const, 'console.password' as const], createdAt: new Date().toISOString(), updatedAt: new Date().toISOString()
  }
  assert.equal(compile(StoredServer, 'server').check(s), true)
  const v = toServerView(s)
  assert.equal(v.connection.password, MASK)
  assert.equal(v.console?.password, MASK)
  assert.equal(v.connection.username, 'root')
  assert.ok(!JSON.stringify(v).includes('"pw"'))
})

test('a job is tagged by kind: each kind carries its own members and no other', () => {
  const check = compile(Job, 'job')
  const { action: _action, ...common } = job()
  const params = { protocol: 'vnc', ttlSeconds: 60, singleUse: false }
  assert.equal(check.check({ ...common, kind: 'power', action: 'on' }), true)
  assert.equal(check.check({ ...common, kind: 'status' }), true)
  assert.equal(check.check({ ...common, kind: 'console', console: params }), true)
  assert.equal(check.check({ ...common, kind: 'status', action: 'on' }), false, 'a status job has no action')
  assert.equal(check.check({ ...common, kind: 'power', console: params, action: 'on' }), false, 'a power job has no console')
  assert.equal(check.check({ ...common, kind: 'console' }), false, 'a console job needs its parameters')
})

test('a tagged union\'s error names the member of the variant its tag picks, or the tags it could have', () => {
  const check = compile(Job, 'job')
  const { action: _action, ...common } = job()
  const noAction = (() => { try { check.parse({ ...common, kind: 'power' }) } catch (err) { return err as ValidationError } })()
  assert.ok(noAction instanceof ValidationError)
  assert.equal(noAction.details?.field, 'action')
  assert.match(noAction.message, /^invalid job: action: /)
  assert.equal(check.explain({ ...common, kind: 'explode' }), 'invalid job: kind: expected one of "power", "status", "console"')
  assert.equal(check.explain(undefined), 'invalid job: the message body is not JSON')
  // Nested: the server of an agent request, tagged by agent.
  const server = { id: randomUUID(), tenantId: randomUUID(), name: 'n', agent: 'ipmi', connection: { username: 'root' }, secretPaths: [], createdAt: common.createdAt, updatedAt: common.createdAt }
  assert.match(compile(StoredServer, 'server').explain(server), /^invalid server: connection\.host: /)
})

test('jobIdOf finds the job a message names (a Job, or a message holding one) only by a well-formed id', () => {
  const id = randomUUID()
  assert.equal(jobIdOf({ id, kind: 'bogus' }), id)
  assert.equal(jobIdOf({ job: { id }, server: {} }), id)
  assert.equal(jobIdOf({ job: { id: 'not-a-uuid' } }), undefined)
  assert.equal(jobIdOf({ jobId: id }), undefined, 'a JobUpdate names no job to fail')
  assert.equal(jobIdOf('text'), undefined)
  assert.equal(isUuid(id.toUpperCase()), true)
})

test('stored connections are their agent\'s: an ovirt engine over plain HTTP is refused, and each problem names the member', () => {
  assert.equal(connectionProblem('ovirt', { url: 'https://e.example/ovirt-engine', username: 'u', vmId: 'v' }), undefined)
  assert.match(connectionProblem('ovirt', { url: 'http://e.example/ovirt-engine', username: 'u', vmId: 'v' }) ?? '', /^url: /)
  assert.match(connectionProblem('ipmi', { username: 'root' }) ?? '', /^host: /)
  assert.match(connectionProblem('kvm', { transport: 'ssh', host: '-oProxyCommand=x', domain: 'd' }) ?? '', /^host: expected a host name/)
  assert.match(connectionProblem('ipmi', { host: 'bmc', username: 'root', password: 'pw' }) ?? '', /password/, 'a stored connection holds no password')
})

test('a result is checked against its job\'s kind', () => {
  const power = { power: 'on', checkedAt: new Date().toISOString() }
  const consoleResult = { sessionId: randomUUID(), protocol: 'vnc', expiresAt: new Date().toISOString() }
  assert.equal(resultProblem('power', power), undefined)
  assert.equal(resultProblem('status', power), undefined)
  assert.equal(resultProblem('console', consoleResult), undefined)
  assert.ok(resultProblem('power', consoleResult) !== undefined)
  assert.ok(resultProblem('console', power) !== undefined)
})
