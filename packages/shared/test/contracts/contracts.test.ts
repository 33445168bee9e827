import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { compile, Job, JobUpdate, StoredServer, toServerView, MASK, splitSecrets } from '../../src/contracts/index.js'
import { ValidationError } from '../../src/errors/index.js'

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
