import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { REPO_ROOT, dropNamespace, freePort, services, uniqueNamespace } from '@porthole/shared/testing'

test('SIGTERM while the start still waits for an unreachable broker ends the receiver with exit code 0', async (t) => {
  const svc = await services()
  const ns = uniqueNamespace()
  t.after(async () => await dropNamespace(ns, svc))
  const closedPort = await freePort() // nothing listens there: the start keeps retrying the broker
  const p = spawn(process.execPath, [join(REPO_ROOT, 'services', 'receiver', 'dist', 'src', 'main.js')], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:${closedPort}`, REDIS_URL: svc.redisUrl, PORTHOLE_NAMESPACE: ns, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  p.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
  p.stderr.setEncoding('utf8').on('data', (s: string) => { out += s })
  const exited = new Promise<{ code: number | null, signal: string | null }>(resolve => p.once('exit', (code, signal) => resolve({ code, signal })))
  t.after(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL') })
  await new Promise(resolve => setTimeout(resolve, 500))
  assert.match(out, /broker connect failed/, 'the receiver should still be retrying the broker')
  assert.doesNotMatch(out, /"msg":"ready"/)
  const t0 = Date.now()
  p.kill('SIGTERM')
  const r = await Promise.race([exited, new Promise<'hung'>(resolve => setTimeout(() => resolve('hung'), 5000).unref())])
  assert.notEqual(r, 'hung', `no exit within 5 s:\n${out}`)
  assert.deepEqual(r, { code: 0, signal: null }, out)
  assert.ok(Date.now() - t0 < 5000)
})
