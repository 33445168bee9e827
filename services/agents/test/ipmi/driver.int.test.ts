import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdir, readFile, stat } from 'node:fs/promises'
import { waitFor, within } from '@porthole/testkit'
import { createIpmiDriver } from '../../src/ipmi/index.js'
import { agentContext, rejectsWith } from '../context.js'
import { freeUdpPort, startIpmiSim, type IpmiSim } from '@porthole/testkit/ipmi'

const driver = (minIntervalMs = 50) => createIpmiDriver({ minIntervalMs, pollIntervalMs: 200 })

function ctxFor (sim: Pick<IpmiSim, 'host' | 'port' | 'username' | 'password'>, o: { deadlineMs?: number, password?: string, console?: Record<string, unknown>, consolePassword?: string } = {}) {
  return agentContext({
    agent: 'ipmi',
    connection: { host: sim.host, port: sim.port, username: sim.username, cipherSuite: 3 },
    console: o.console,
    secrets: { connection: { password: o.password ?? sim.password }, console: o.consolePassword === undefined ? undefined : { password: o.consolePassword } },
    deadlineMs: o.deadlineMs
  })
}


/** The pid of a running ipmitool that talks to `port`, asked of /proc; undefined when there is none. */
async function ipmitoolFor (port: number): Promise<string | undefined> {
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')
    if (cmd.includes('ipmitool') && cmd.split('\0').includes(String(port))) return p
  }
  return undefined
}

test('status, on, off and reset change the simulated chassis as asked', async (t) => {
  const sim = await startIpmiSim(t)
  const d = driver()
  t.after(() => d.close())
  const ctx = ctxFor(sim)

  assert.equal((await d.status(ctx)).power, 'off')

  const on = await d.power(ctx, 'on')
  assert.deepEqual([on.power, on.changed], ['on', true])
  assert.equal(await sim.power(), 'on')
  assert.ok((await sim.calls()).some(c => c.call === 'set power 1'))
  assert.equal((await d.status(ctx)).power, 'on')

  const before = (await sim.calls()).length
  const reset = await d.power(ctx, 'reset')
  assert.deepEqual([reset.power, reset.changed], ['on', true])
  const after = (await sim.calls()).slice(before)
  assert.ok(after.some(c => c.call === 'set reset 1'), 'the BMC got a reset')
  assert.ok(!after.some(c => c.call.startsWith('set power')), 'a reset is not an off/on cycle')

  const off = await d.power(ctx, 'off')
  assert.deepEqual([off.power, off.changed], ['off', true])
  assert.equal(await sim.power(), 'off')
  // Nothing was said that the log must not hold.
  assert.ok(!ctx.lines.join('').includes(sim.password))
})

test('on does not cycle a running host; off of a host that is off changes nothing', async (t) => {
  const sim = await startIpmiSim(t, { power: 'on' })
  const d = driver()
  const ctx = ctxFor(sim)
  const mtime = (await stat(`${sim.dir}/power`)).mtimeMs
  const r = await d.power(ctx, 'on')
  assert.deepEqual([r.power, r.changed], ['on', false])
  assert.equal(await sim.power(), 'on')
  assert.equal((await stat(`${sim.dir}/power`)).mtimeMs, mtime, 'the power file was not written')
  assert.deepEqual((await sim.calls()).filter(c => c.call.startsWith('set')), [], 'no power command reached the BMC')

  await sim.setPower('off')
  const off = await d.power(ctx, 'off')
  assert.deepEqual([off.power, off.changed], ['off', false])
  assert.deepEqual((await sim.calls()).filter(c => c.call.startsWith('set')), [])
})

test('shutdown presses the ACPI button and waits until the host is off', async (t) => {
  const sim = await startIpmiSim(t, { power: 'on', softDelayMs: 800 })
  const d = driver()
  const ctx = ctxFor(sim)
  const r = await d.power(ctx, 'shutdown')
  assert.deepEqual([r.power, r.changed], ['off', true])
  assert.equal(await sim.power(), 'off')
  const calls = (await sim.calls()).map(c => c.call)
  assert.ok(calls.includes('set shutdown 1'), 'a soft shutdown, not a hard power off')
  assert.ok(!calls.includes('set power 0'))
  assert.ok(calls.includes('os-powered-off'), 'the host went off by itself')
})

test('shutdown of a host that ignores the ACPI request is a timeout after the wait, and the host stays on', async (t) => {
  const sim = await startIpmiSim(t, { power: 'on', ignoreSoft: true })
  const d = createIpmiDriver({ minIntervalMs: 50, pollIntervalMs: 200, shutdownWaitMs: 1000 })
  const err = await within(rejectsWith(d.power(ctxFor(sim), 'shutdown'), 'timeout'), 20_000, 'the shutdown to give up after its 1 s wait')
  assert.match(err.message, /not off after 1000 ms/, 'the wait ended it, not the deadline')
  assert.equal(await sim.power(), 'on')
  assert.ok((await sim.calls()).some(c => c.call === 'set shutdown 1'))
})

test('reboot or reset of a host that is off powers it on', async (t) => {
  const sim = await startIpmiSim(t)
  const d = driver()
  const r = await d.power(ctxFor(sim), 'reboot')
  assert.deepEqual([r.power, r.changed, r.detail], ['on', true, 'was off: powered on'])
  assert.equal(await sim.power(), 'on')
  assert.ok(!(await sim.calls()).some(c => c.call === 'set reset 1'))
})

test('suspend and resume are unsupported by IPMI', async (t) => {
  const sim = await startIpmiSim(t)
  const d = driver()
  await rejectsWith(d.power(ctxFor(sim), 'suspend'), 'unsupported')
  await rejectsWith(d.power(ctxFor(sim), 'resume'), 'unsupported')
  assert.deepEqual(await sim.calls(), [], 'nothing was sent to the BMC')
})

test('a wrong password is an auth error at once, not retried', async (t) => {
  const sim = await startIpmiSim(t, { power: 'on' })
  const d = driver()
  const ctx = ctxFor(sim, { password: 'not-the-password' })
  const err = await rejectsWith(d.power(ctx, 'off'), 'auth')
  assert.equal(err.retryable, false)
  assert.ok(!ctx.lines.some(l => l.includes('ipmi command failed, retrying')), 'an auth refusal is not retried')
  assert.equal(await sim.power(), 'on')
  assert.ok(!err.message.includes('not-the-password'))
  assert.ok(!ctx.lines.join('').includes('not-the-password'))
  // A wrong user name is refused the same way.
  await rejectsWith(d.status(agentContext({ agent: 'ipmi', connection: { host: sim.host, port: sim.port, username: 'nobody' }, secrets: { connection: { password: sim.password } } })), 'auth')
})

test('an unreachable BMC is a connection error before the deadline', async () => {
  const port = await freeUdpPort()
  const d = driver()
  const ctx = ctxFor({ host: '127.0.0.1', port, username: 'u', password: 'p' }, { deadlineMs: 7000 })
  // "connection", not "timeout": the driver gave up before the deadline did.
  const err = await rejectsWith(d.status(ctx), 'connection')
  assert.equal(err.retryable, true)
  assert.ok(ctx.lines.some(l => l.includes('ipmi command failed, retrying')))
})

test('at the deadline the ipmitool process is killed and the job times out', async () => {
  const port = await freeUdpPort()
  const d = driver()
  const ctx = ctxFor({ host: '127.0.0.1', port, username: 'u', password: 'p' }, { deadlineMs: 700 })
  await within(rejectsWith(d.status(ctx), 'timeout'), 20_000, 'the status to end at its 0.7 s deadline')
  const left = await waitFor(async () => await ipmitoolFor(port) === undefined, 500, 'ipmitool to be gone (it would live about 2 s by itself)', 50)
  assert.equal(left, true)
})

test('the password reaches ipmitool through its environment only, never its argv', async () => {
  const port = await freeUdpPort()
  const d = driver()
  const password = `secret-${port}-pw`
  const ctx = ctxFor({ host: '127.0.0.1', port, username: 'u', password }, { deadlineMs: 3000 })
  const running = d.status(ctx).catch((err: unknown) => err)
  const pid = await waitFor(async () => await ipmitoolFor(port), 3000, 'the ipmitool process', 20)
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
  const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0')
  assert.ok(argv.includes('-E'))
  assert.ok(!argv.some(a => a.includes(password)), 'the password is not in argv')
  assert.ok(environ.includes(`IPMI_PASSWORD=${password}`), 'the password is in the environment')
  assert.ok(!environ.some(e => e.startsWith('PORTHOLE_')), 'the agent environment is not passed on')
  await running
  assert.ok(!ctx.lines.join('').includes(password), 'the password is in no log line')
})

test('commands to one BMC run one at a time, spaced by the minimum interval', async (t) => {
  const sim = await startIpmiSim(t, { power: 'on' })
  const d = driver(300)
  const results = await Promise.all([1, 2, 3, 4].map(async () => await d.status(ctxFor(sim))))
  assert.deepEqual(results.map(r => r.power), ['on', 'on', 'on', 'on'])
  const gets = (await sim.calls()).filter(c => c.call === 'get power').map(c => c.at).sort((a, b) => a - b)
  assert.equal(gets.length, 4)
  for (let i = 1; i < gets.length; i++) assert.ok(gets[i]! - gets[i - 1]! >= 280, `commands ${gets[i]! - gets[i - 1]!} ms apart`)
})

test('the console target is the BMC\'s VNC endpoint, or a conflict when there is none', async () => {
  const d = driver()
  const target = await d.consoleTarget(ctxFor({ host: '127.0.0.1', port: 623, username: 'u', password: 'p' }, { console: { host: '10.0.0.9', port: 5901 }, consolePassword: 'vncpw' }), 'vnc')
  assert.deepEqual(target, { kind: 'vnc', host: '10.0.0.9', port: 5901, password: 'vncpw' })
  const err = await rejectsWith(d.consoleTarget(ctxFor({ host: '127.0.0.1', port: 623, username: 'u', password: 'p' }), 'vnc'), 'conflict')
  assert.equal(err.message, 'this server has no console endpoint configured')
})
