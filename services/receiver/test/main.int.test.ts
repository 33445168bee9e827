import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { dropNamespace, mainOf, freePort, services, uniqueNamespace, waitFor, within } from '@porthole/testkit'

test('SIGTERM while the start still waits for an unreachable broker ends the receiver with exit code 0', async (t) => {
  const svc = await services()
  const ns = uniqueNamespace()
  t.after(async () => await dropNamespace(ns, svc))
  const closedPort = await freePort() // nothing listens there: the start keeps retrying the broker
  const p = spawn(process.execPath, [mainOf('receiver')], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:${closedPort}`, REDIS_URL: svc.redisUrl, PORTHOLE_NAMESPACE: ns, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  p.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
  p.stderr.setEncoding('utf8').on('data', (s: string) => { out += s })
  const exited = new Promise<{ code: number | null, signal: string | null }>(resolve => p.once('exit', (code, signal) => resolve({ code, signal })))
  t.after(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL') })
  // The first failed connect attempt is the event that proves the start is under way and waiting.
  await waitFor(() => /broker connect failed/.test(out), 20_000, 'the receiver to log a failed broker connect')
  assert.doesNotMatch(out, /"msg":"ready"/)
  p.kill('SIGTERM')
  const r = await within(exited, 10_000, 'the receiver to exit after SIGTERM').catch((err: unknown) => { throw new Error(`${(err as Error).message}:\n${out}`) })
  assert.deepEqual(r, { code: 0, signal: null }, out)
})
