import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import type { TestContext } from 'node:test'
import { SecretBox } from '@porthole/shared/crypto'
import { PortholeError } from '@porthole/shared/errors'
import { createLogger } from '@porthole/shared/logging'
import { createRedis } from '@porthole/shared/store'
import { dropNamespace, services, testSecretKey, uniqueNamespace, waitFor } from '@porthole/shared/testing'
import { createIpmiDriver } from '../../src/ipmi/index.js'
import { SolTickets, startSolBridge, type SolBridge } from '../../src/ipmi/sol.js'
import { agentContext, type TestCtx } from '../context.js'
import { startIpmiSim, startSerialDevice, type IpmiSim } from './ipmi-sim.js'

interface Setup { sim: IpmiSim, bridge: SolBridge, tickets: SolTickets, lines: string[], ctx: (o?: { password?: string, ttlSeconds?: number }) => TestCtx }

async function setup (t: TestContext): Promise<Setup & { device: Awaited<ReturnType<typeof startSerialDevice>> }> {
  const device = await startSerialDevice(t)
  const sim = await startIpmiSim(t, { power: 'on', sol: device.device })
  const svc = await services()
  const ns = uniqueNamespace()
  const lines: string[] = []
  const log = createLogger({ name: 'agents-test', level: 'debug', destination: new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb() } }) })
  const redis = createRedis(svc.redisUrl, log, 'sol-test')
  const box = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: testSecretKey(), PORTHOLE_SECRET_KEY_ID: 'k1', PORTHOLE_OLD_SECRET_KEYS: '' })
  const tickets = new SolTickets(redis, box, ns)
  const bridge = await startSolBridge({ host: '127.0.0.1', port: 0, tickets, ipmitool: 'ipmitool', log })
  t.after(async () => {
    await bridge.close()
    await dropNamespace(ns, svc).catch(() => {})
    await redis.quit()
  })
  const ctx = (o: { password?: string, ttlSeconds?: number } = {}): TestCtx => agentContext({
    agent: 'ipmi',
    connection: { host: sim.host, port: sim.port, username: sim.username, cipherSuite: 3 },
    secrets: { connection: { password: o.password ?? sim.password } },
    lines,
    ttlSeconds: o.ttlSeconds
  })
  return { sim, bridge, tickets, lines, ctx, device }
}

/** A TCP client of the bridge that collects what it receives. */
function client (port: number): { socket: Socket, text: () => string, closed: Promise<void> } {
  const socket = connect({ host: '127.0.0.1', port })
  let text = ''
  socket.setEncoding('latin1').on('data', (d: string) => { text += d })
  socket.on('error', () => {})
  const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
  return { socket, text: () => text, closed }
}

async function ipmitoolPids (port: number, word: string): Promise<string[]> {
  const out: string[] = []
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue
    const argv = (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0')
    if (argv.some(a => a.endsWith('ipmitool')) && argv.includes(String(port)) && argv.includes(word)) out.push(p)
  }
  return out
}

test('a serial console target is the bridge with a one-time token; the bridge streams SOL both ways', async (t) => {
  const s = await setup(t)
  const d = createIpmiDriver({ minIntervalMs: 50, sol: { tickets: s.tickets, host: '127.0.0.1', port: () => s.bridge.port } })
  const ctx = s.ctx({ ttlSeconds: 60 })
  const target = await d.consoleTarget(ctx, 'serial')
  assert.equal(target.kind, 'sol')
  assert.equal(target.host, '127.0.0.1')
  assert.equal(target.port, s.bridge.port)
  assert.ok(target.password !== undefined && Buffer.from(target.password, 'base64url').length >= 16, 'a token of at least 128 bits')
  assert.ok(!JSON.stringify(target).includes(s.sim.password), 'the BMC password is not in the target')

  const c = client(s.bridge.port)
  c.socket.write(`PORTHOLE-SOL ${target.password ?? ''}\n`)
  // Enter, as a user would, until the getty's prompt comes back through SOL (a simulated BMC may drop
  // the first packet of a session).
  await waitFor(async () => {
    if (c.text().includes(s.device.banner)) return true
    if (c.text().startsWith('OK\n')) c.socket.write('\r')
    await new Promise(resolve => setTimeout(resolve, 400))
    return false
  }, 15_000, 'the banner through SOL', 0).catch((err: unknown) => { throw new Error(`${(err as Error).message}: got ${JSON.stringify(c.text())}`) })
  assert.ok(c.text().startsWith('OK\n'), JSON.stringify(c.text()))

  // The password reaches ipmitool in its environment, never in argv.
  const [pid] = await ipmitoolPids(s.sim.port, 'activate')
  assert.ok(pid !== undefined, 'ipmitool sol activate runs')
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
  const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0')
  assert.ok(argv.includes('-E') && argv.includes('sol'))
  assert.ok(!argv.some(a => a.includes(s.sim.password)), 'the password is not in argv')
  assert.ok(!argv.some(a => a.includes(target.password ?? '-')), 'the token is not in argv')
  assert.ok(environ.includes(`IPMI_PASSWORD=${s.sim.password}`))

  // A round trip through ipmi_sim to the device and back: the device answers in upper case.
  c.socket.write('abc')
  await waitFor(() => c.text().includes('ABC'), 10_000, 'the echo through SOL')
  assert.ok(s.device.received().includes('abc'), 'the device received what was typed')

  // The gateway's side closes: ipmitool goes too.
  c.socket.end()
  await c.closed
  await waitFor(async () => (await ipmitoolPids(s.sim.port, 'activate')).length === 0, 6000, 'ipmitool to exit', 50)
  await waitFor(() => s.bridge.count === 0, 2000, 'the bridge connection to end')

  const logs = s.lines.join('')
  assert.ok(logs.includes('sol session started'))
  assert.ok(!logs.includes(s.sim.password), 'no BMC password in the logs')
  assert.ok(!logs.includes(target.password ?? '-'), 'no token in the logs')
})

test('a wrong or expired token is refused without reaching the BMC; a wrong BMC password is an auth refusal', async (t) => {
  const s = await setup(t)
  const d = createIpmiDriver({ minIntervalMs: 50, sol: { tickets: s.tickets, host: '127.0.0.1', port: () => s.bridge.port } })

  for (const hello of [`PORTHOLE-SOL ${'x'.repeat(43)}\n`, 'HELLO\n', 'PORTHOLE-SOL \n']) {
    const c = client(s.bridge.port)
    c.socket.write(hello)
    await c.closed
    assert.equal(c.text(), 'ERR invalid\n')
  }
  assert.deepEqual(await s.sim.calls(), [])
  assert.deepEqual(await ipmitoolPids(s.sim.port, 'sol'), [])

  // A ticket past its lifetime is gone from Redis.
  const short = await d.consoleTarget(s.ctx({ ttlSeconds: 1 }), 'serial')
  await waitFor(async () => await s.tickets.find(short.password ?? '') === undefined, 10_000, 'the one-second ticket to expire')
  const late = client(s.bridge.port)
  late.socket.write(`PORTHOLE-SOL ${short.password ?? ''}\n`)
  await late.closed
  assert.equal(late.text(), 'ERR invalid\n')

  const wrong = await d.consoleTarget(s.ctx({ password: 'not-the-password' }), 'serial')
  const c = client(s.bridge.port)
  c.socket.write(`PORTHOLE-SOL ${wrong.password ?? ''}\n`)
  await c.closed
  assert.equal(c.text(), 'ERR auth\n')
  assert.ok(!s.lines.join('').includes('not-the-password'))
})

test('without a bridge, and for other agent types, serial is unsupported', async () => {
  const d = createIpmiDriver({ minIntervalMs: 50 })
  const ctx = agentContext({ agent: 'ipmi', connection: { host: '127.0.0.1', username: 'u' }, secrets: { connection: { password: 'p' } } })
  await assert.rejects(d.consoleTarget(ctx, 'serial'), (err: unknown) => err instanceof PortholeError && err.code === 'unsupported')
})
