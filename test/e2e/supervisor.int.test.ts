// `npm start`'s supervisor (scripts/start.mjs) run as a user runs it, against the real RabbitMQ and Redis,
// with its own namespace and free ports: a bad setting stops everything with one line, a crash restarts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { REPO_ROOT, dropNamespace, freePort, services, testSecretKey, uniqueNamespace, waitFor } from '@porthole/testkit'

interface Run { out: () => string, err: () => string, exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>, kill: (s: NodeJS.Signals) => void }

/** Runs scripts/start.mjs with the given settings on top of a unique namespace, free ports and fresh keys. */
async function start (t: { after: (fn: () => Promise<void>) => void }, ns: string, args: string[], env: Record<string, string>): Promise<Run> {
  const svc = await services()
  const child = spawn(process.execPath, [join(REPO_ROOT, 'scripts', 'start.mjs'), ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      NO_COLOR: '1',
      RABBITMQ_URL: svc.rabbitmqUrl,
      REDIS_URL: svc.redisUrl,
      PORTHOLE_NAMESPACE: ns,
      API_PORT: String(await freePort()),
      GATEWAY_PORT: String(await freePort()),
      SOL_BRIDGE_PORT: '0',
      RECEIVER_METRICS_PORT: '0',
      AGENTS_METRICS_PORT: '0',
      GATEWAY_METRICS_PORT: '0',
      // All three given: nothing is generated into .porthole/local.env.
      PORTHOLE_SECRET_KEY: testSecretKey(),
      CONSOLE_KEY: testSecretKey(),
      PORTHOLE_ADMIN_TOKEN: `adm_${testSecretKey()}`,
      ...env
    }
  })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.once('close', (code, signal) => resolve({ code, signal })))
  t.after(async () => {
    // A supervisor still running (a failed test) is stopped as Ctrl-C would; anything of this namespace that
    // outlives it is killed, so a failure leaves no service behind.
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await within(exited, 15_000, 'the supervisor to stop').catch(() => { child.kill('SIGKILL') })
    }
    for (const pid of processesOf(ns)) { try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ } }
    await dropNamespace(ns, svc)
  })
  return { out: () => out, err: () => err, exited, kill: (s) => child.kill(s) }
}

/** Resolves with how the process ended, or fails the test when it runs past `ms`. */
async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms) })
  try { return await Promise.race([p, late]) } finally { clearTimeout(timer) }
}

/** PIDs of live processes whose environment carries this namespace (the supervisor and its services). */
function processesOf (ns: string): number[] {
  const mark = `\0PORTHOLE_NAMESPACE=${ns}\0`
  const pids: number[] = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      if (`\0${readFileSync(`/proc/${d}/environ`, 'latin1')}`.includes(mark)) pids.push(Number(d))
    } catch { /* gone, or not ours to read */ }
  }
  return pids
}

test('a bad setting stops npm start with one line naming the service and the setting, exit code 2, the others stopped cleanly', async (t) => {
  const ns = uniqueNamespace('sup')
  const run = await start(t, ns, [], { PORTHOLE_ADMIN_TOKEN: 'too-short' })
  const { code } = await within(run.exited, 60_000, 'the supervisor to exit')
  const all = run.out() + run.err()
  assert.equal(code, 2, all)
  const last = run.err().trimEnd().split('\n').at(-1) ?? ''
  assert.match(last, /^start +\| api: bad configuration: PORTHOLE_ADMIN_TOKEN: expected at least 24 characters — fix the setting and start again$/, all)
  assert.doesNotMatch(all, /api exited \(code 2\).*restarting/, 'the api was restarted')
  assert.equal(all.match(/api: bad configuration:/g)?.length, 2, `the api ran once (its own line, then the supervisor's):\n${all}`)
  // The others got SIGTERM and exited 0 ("stopped", not "did not exit cleanly"), and none is left running.
  assert.match(run.out(), /^start +\| stopped$/m, all)
  assert.deepEqual(processesOf(ns), [])
})

test('a service that crashes is restarted, with a growing back-off', async (t) => {
  // The agents' serial-over-LAN bridge cannot listen on a port held here: the start fails (exit code 1).
  const held = createServer()
  await new Promise<void>(resolve => held.listen(0, '127.0.0.1', resolve))
  t.after(async () => await new Promise<void>(resolve => held.close(() => resolve())))
  const port = (held.address() as { port: number }).port
  const ns = uniqueNamespace('sup')
  const run = await start(t, ns, ['agents'], { AGENT_TYPES: 'ipmi', SOL_BRIDGE_HOST: '127.0.0.1', SOL_BRIDGE_PORT: String(port) })
  await waitFor(() => /restart 2\)/.test(run.err()), 60_000, `two restarts of the agents:\n${run.out()}${run.err()}`)
  assert.match(run.err(), /agents exited \(code 1\) after [\d.]+ s; restarting in 0\.5 s \(restart 1\)/)
  assert.match(run.err(), /agents exited \(code 1\) after [\d.]+ s; restarting in 1\.0 s \(restart 2\)/)
  run.kill('SIGTERM')
  const { code } = await within(run.exited, 30_000, 'the supervisor to stop on SIGTERM')
  assert.equal(code, 0, run.out() + run.err())
  assert.deepEqual(processesOf(ns), [])
})

test('--replicas 2 runs two of each service, the second on the ports of the first + 100, and stops them all', async (t) => {
  const ns = uniqueNamespace('sup')
  const apiPort = await freePort()
  const run = await start(t, ns, ['--replicas', '2'], { API_PORT: String(apiPort), AGENT_TYPES: 'kvm', CONSOLE_TRANSIT_KEY: testSecretKey(), SOL_BRIDGE_SECRET: testSecretKey() })
  await waitFor(() => /all 8 processes ready: 2 replicas of api, receiver, agents, console-gateway/.test(run.out()), 120_000, `all eight ready:\n${run.out()}${run.err()}`)
  for (const port of [apiPort, apiPort + 100]) {
    const r = await fetch(`http://127.0.0.1:${port}/readyz`)
    assert.equal(r.status, 200, `API replica on :${port}`)
  }
  assert.match(run.out(), /^api#2 +\| /m, 'the second replica\'s lines are tagged with its number')
  run.kill('SIGTERM')
  const { code } = await within(run.exited, 120_000, 'the supervisor to stop on SIGTERM')
  assert.equal(code, 0, run.out() + run.err())
  assert.deepEqual(processesOf(ns), [])
})
