import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mainOf, startStack, testSecretKey } from '@porthole/testkit'

const MAIN = mainOf('api')

test('main: serves, logs "ready", exits 0 on SIGTERM, never logs the admin token', async (t) => {
  const stack = await startStack(t, { services: ['api'] })
  const r = await stack.api('POST', '/v1/tenants', { name: 'acme' })
  assert.equal(r.status, 201)
  const p = stack.procs.get('api')
  assert.ok(p !== undefined)
  const exit = new Promise<number | null>(resolve => p.once('exit', code => resolve(code)))
  p.kill('SIGTERM')
  assert.equal(await exit, 0)
  assert.ok(!stack.logs().includes(stack.adminToken))
  assert.ok(!stack.logs().includes(stack.secretKey))
  assert.match(stack.logs(), /"msg":"stopped"/)
})

test('main: a bad setting exits non-zero naming the variable', async () => {
  const p = spawn(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '', PORTHOLE_SECRET_KEY: testSecretKey(), CONSOLE_TRANSIT_KEY: testSecretKey(), API_PORT: 'http' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  p.stderr.setEncoding('utf8').on('data', (c: string) => { err += c })
  const code = await new Promise<number | null>(resolve => p.once('exit', c => resolve(c)))
  assert.notEqual(code, 0)
  assert.match(err, /API_PORT/)
})

test('main: once "ready" with the broker up, the first job is accepted, also on a restart', async (t) => {
  const stack = await startStack(t, { services: ['api'] })
  const tenantId = (await stack.api('POST', '/v1/tenants', { name: 'acme' })).body.id as string
  const server = await stack.api('POST', '/v1/servers', { name: 'web-1', tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'web-1' } })
  assert.equal(server.status, 201, JSON.stringify(server.body))
  // A restart finds its queues declared already and starts fast: it must not serve before its broker connection.
  for (let i = 0; i < 3; i++) {
    await stack.stop('api')
    await stack.start('api')
    const job = await stack.api('GET', `/v1/servers/${server.body.id as string}/status?wait=0`)
    assert.equal(job.status, 202, `restart ${i + 1}: ${JSON.stringify(job.body)}`)
  }
})
