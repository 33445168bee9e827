import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import type { TestContext } from 'node:test'
import type { ConsoleSession, ConsoleTarget, StoredIpmiServer } from '@porthole/contracts'
import { nextSolTicket, SecretBox, writeSolHello } from '@porthole/shared/crypto'
import { PortholeError } from '@porthole/contracts/errors'
import { createLogger } from '@porthole/shared/logging'
import { ConsoleSessionStore, createRedis } from '@porthole/shared/store'
import { dropNamespace, services, testSecretKey, uniqueNamespace, waitFor } from '@porthole/testkit'
import { readConfig } from '../../src/config.js'
import { createIpmiDriver } from '../../src/ipmi/index.js'
import { SolTickets } from '../../src/ipmi/sol-tickets.js'
import { startSolBridge, type SolBridge } from '../../src/ipmi/sol.js'
import { agentContext, type TestCtx } from '../context.js'
import { startIpmiSim, startSerialDevice, type IpmiSim } from '@porthole/testkit/ipmi'

/** A serial target's bridge ticket (undefined for any other target). */
const ticketOf = (t: ConsoleTarget): string | undefined => t.kind === 'sol' ? t.ticket : undefined

interface Setup {
  sim: IpmiSim
  bridge: SolBridge
  tickets: SolTickets
  sessions: ConsoleSessionStore
  secret: Buffer
  secretB64: string
  lines: string[]
  ctx: (o?: { password?: string, ttlSeconds?: number }) => TestCtx<StoredIpmiServer>
  /** A serial console target for `ctx`'s job, and the console session the gateway would mint from it. */
  console: (ctx: TestCtx<StoredIpmiServer>, o?: { ttlSeconds?: number }) => Promise<{ target: ConsoleTarget, session: ConsoleSession }>
}

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
  const sessions = new ConsoleSessionStore(redis, ns)
  const secretB64 = randomBytes(32).toString('base64')
  const secret = Buffer.from(secretB64, 'base64')
  const bridge = await startSolBridge({ host: '127.0.0.1', port: 0, tickets, secret, ipmitool: 'ipmitool', log })
  t.after(async () => {
    await bridge.close()
    await dropNamespace(ns, svc).catch(() => {})
    await redis.quit()
  })
  const ctx = (o: { password?: string, ttlSeconds?: number } = {}): TestCtx<StoredIpmiServer> => agentContext({
    agent: 'ipmi',
    connection: { host: sim.host, port: sim.port, username: sim.username, cipherSuite: 3 },
    secrets: { connection: { password: o.password ?? sim.password } },
    lines,
    ttlSeconds: o.ttlSeconds
  })
  const d = createIpmiDriver({ minIntervalMs: 50, sol: { tickets, host: '127.0.0.1', port: () => bridge.port } })
  const console = async (c: TestCtx<StoredIpmiServer>, o: { ttlSeconds?: number } = {}): Promise<{ target: ConsoleTarget, session: ConsoleSession }> => {
    const target = await d.consoleTarget(c, 'serial')
    // What the gateway's minter stores (the target itself sealed with a key the agents do not have).
    const id = randomUUID()
    const now = Date.now()
    const session: ConsoleSession = {
      id, serverId: c.server.id, tenantId: c.server.tenantId, serverName: 'test', jobId: c.job.id, protocol: 'serial',
      target: box.seal({}, id), tokenHash: randomBytes(32).toString('hex'), createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + (o.ttlSeconds ?? 60) * 1000).toISOString(), singleUse: false
    }
    await sessions.create(session)
    return { target, session }
  }
  return { sim, bridge, tickets, sessions, secret, secretB64, lines, ctx, console, device }
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

/** Connects as the gateway does: a hello signed with `secret` for `ticket` and `sessionId`; `next` is its successor. */
function gateway (s: Setup, ticket: string, sessionId: string): ReturnType<typeof client> & { next: string, line: string } {
  const c = client(s.bridge.port)
  const hello = writeSolHello(s.secret, ticket, sessionId)
  c.socket.write(hello.line)
  return { ...c, ...hello }
}

/** Enter, as a user would, until the getty's prompt comes back through SOL (a simulated BMC may drop the first packet). */
async function banner (c: ReturnType<typeof client>, banner: string): Promise<void> {
  await waitFor(async () => {
    if (c.text().includes(banner)) return true
    if (c.text().startsWith('CLAIMED\nOK\n')) c.socket.write('\r')
    return false
  }, 15_000, 'the banner through SOL', 400).catch((err: unknown) => { throw new Error(`${(err as Error).message}: got ${JSON.stringify(c.text())}`) })
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


/** The kernel's listening TCP sockets on `port`: their local addresses, as /proc/net/tcp{,6} holds them. */
async function listeningOn (port: number): Promise<string[]> {
  const out: string[] = []
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of (await readFile(f, 'utf8').catch(() => '')).split('\n').slice(1)) {
      const [, local, , st] = line.trim().split(/\s+/)
      if (local?.endsWith(`:${hexPort}`) === true && st === '0A') out.push(local.slice(0, -5))
    }
  }
  return out
}

test('a serial console target is the bridge with a ticket; the bridge streams SOL both ways for the gateway', async (t) => {
  const s = await setup(t)
  const ctx = s.ctx({ ttlSeconds: 60 })
  const { target, session } = await s.console(ctx)
  assert.equal(target.kind, 'sol')
  assert.equal(target.host, '127.0.0.1')
  assert.equal(target.port, s.bridge.port)
  const ticket0 = ticketOf(target)
  assert.ok(ticket0 !== undefined && Buffer.from(ticket0, 'base64url').length >= 16, 'a ticket of at least 128 bits')
  assert.deepEqual(Object.keys(target).sort(), ['host', 'kind', 'port', 'ticket'], 'the ticket under its own name, no `password` beside it')
  assert.ok(!JSON.stringify(target).includes(s.sim.password), 'the BMC password is not in the target')

  const c = gateway(s, ticketOf(target) ?? '', session.id)
  await banner(c, s.device.banner)
  assert.ok(c.text().startsWith('CLAIMED\nOK\n'), JSON.stringify(c.text()))

  // The password reaches ipmitool in its environment, never in argv.
  const [pid] = await ipmitoolPids(s.sim.port, 'activate')
  assert.ok(pid !== undefined, 'ipmitool sol activate runs')
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
  const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0')
  assert.ok(argv.includes('-E') && argv.includes('sol'))
  assert.ok(!argv.some(a => a.includes(s.sim.password)), 'the password is not in argv')
  assert.ok(!argv.some(a => a.includes(ticketOf(target) ?? '-')), 'the ticket is not in argv')
  assert.ok(environ.includes(`IPMI_PASSWORD=${s.sim.password}`))
  assert.ok(!environ.some(e => e.includes(s.secretB64)), 'the bridge secret is not in ipmitool\'s environment')

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
  assert.ok(!logs.includes(ticketOf(target) ?? '-'), 'no ticket in the logs')
  assert.ok(!logs.includes(c.next), 'no successor ticket in the logs')
  assert.ok(!logs.includes(s.secretB64), 'no bridge secret in the logs')
})

test('a ticket is good for one connection: a second with it is refused, the successor both sides derive works', async (t) => {
  const s = await setup(t)
  const { target, session } = await s.console(s.ctx({ ttlSeconds: 60 }))
  const ticket = ticketOf(target) ?? ''
  const first = gateway(s, ticket, session.id)
  await waitFor(() => first.text().startsWith('CLAIMED\n'), 10_000, 'the first connection to claim the ticket')
  const again = gateway(s, ticket, session.id)
  await again.closed
  assert.equal(again.text(), 'ERR invalid\n')
  // The first hello replayed byte for byte is refused too: its ticket is spent.
  const replay = client(s.bridge.port)
  replay.socket.write(first.line)
  await replay.closed
  assert.equal(replay.text(), 'ERR invalid\n')
  first.socket.destroy()
  await first.closed
  await waitFor(() => s.bridge.count === 0, 10_000, 'the first connection to end')

  // The gateway's reconnect for the same live session: the successor of the spent ticket, which the bridge
  // derived on its side (it never travelled).
  assert.equal(first.next, nextSolTicket(s.secret, ticket, first.line.split(' ')[4] ?? ''))
  const reconnect = gateway(s, first.next, session.id)
  await banner(reconnect, s.device.banner)
  reconnect.socket.destroy()
  await reconnect.closed
  // …and its successor's predecessor is spent as well.
  const stale = gateway(s, first.next, session.id)
  await stale.closed
  assert.equal(stale.text(), 'ERR invalid\n')
  assert.ok(!s.lines.join('').includes(ticket), 'no ticket in the logs')
})

test('revoking the session closes its live SOL connection within a second and makes its ticket useless', async (t) => {
  const s = await setup(t)
  const { target, session } = await s.console(s.ctx({ ttlSeconds: 60 }))
  const c = gateway(s, ticketOf(target) ?? '', session.id)
  await banner(c, s.device.banner)
  let closedAt: number | undefined
  void c.closed.then(() => { closedAt = Date.now() })
  const at = Date.now()
  assert.equal(await s.sessions.revoke(session), true)
  await waitFor(() => closedAt, 10_000, 'the bridge to close the live connection')
  const ms = (closedAt ?? 0) - at
  t.diagnostic(`the bridge closed the connection ${ms} ms after the revocation`)
  assert.ok(ms < 1000, `closed ${ms} ms after the revocation`)
  await waitFor(async () => (await ipmitoolPids(s.sim.port, 'activate')).length === 0, 6000, 'ipmitool to exit', 50)
  // The gateway's next ticket for this session is refused now, before any BMC is asked.
  const calls = (await s.sim.calls()).length
  const late = gateway(s, c.next, session.id)
  await late.closed
  assert.equal(late.text(), 'ERR invalid\n')
  assert.equal((await s.sim.calls()).length, calls)

  // A ticket whose session was revoked before its first connection is refused too.
  const other = await s.console(s.ctx({ ttlSeconds: 60 }))
  await s.sessions.revoke(other.session)
  const never = gateway(s, ticketOf(other.target) ?? '', other.session.id)
  await never.closed
  assert.equal(never.text(), 'ERR invalid\n')
  assert.deepEqual(await ipmitoolPids(s.sim.port, 'sol'), [])
})

test('a peer without the secret is dropped without a byte, and spends no ticket; nor does another session\'s id', async (t) => {
  const s = await setup(t)
  const { target, session } = await s.console(s.ctx({ ttlSeconds: 60 }))
  const ticket = ticketOf(target) ?? ''
  const wrong = writeSolHello(randomBytes(32), ticket, session.id)
  const honest = writeSolHello(s.secret, ticket, session.id)
  const hellos = [
    `PORTHOLE-SOL ${ticket}\n`, // the first protocol: a bare ticket
    wrong.line, // signed with another secret
    honest.line.replace(/ [^ ]+\n$/, ` ${'A'.repeat(43)}\n`), // a forged mac
    honest.line.replace(/ \d+ /, ` ${Date.now() - 120_000} `), // a changed time invalidates the mac
    writeSolHello(s.secret, ticket, session.id, Date.now() - 120_000).line, // a signed hello two minutes old
    'HELLO\n',
    'x'.repeat(600)
  ]
  for (const hello of hellos) {
    const c = client(s.bridge.port)
    c.socket.write(hello)
    await c.closed
    assert.equal(c.text(), '', `nothing answered to ${JSON.stringify(hello.slice(0, 20))}`)
  }
  assert.deepEqual(await s.sim.calls(), [])
  assert.deepEqual(await ipmitoolPids(s.sim.port, 'sol'), [])

  // Signed, but for a session not minted from this ticket's job: refused, and the ticket is spent.
  const foreign = await s.console(s.ctx({ ttlSeconds: 60 }))
  const misused = gateway(s, ticketOf(foreign.target) ?? '', session.id)
  await misused.closed
  assert.equal(misused.text(), 'ERR invalid\n')

  // None of the unsigned peers spent the ticket: the gateway still connects with it.
  const c = gateway(s, ticket, session.id)
  await banner(c, s.device.banner)
  c.socket.destroy()
  await c.closed
  const logs = s.lines.join('')
  assert.ok(logs.includes('sol bridge peer dropped'))
  assert.ok(!logs.includes(ticket) && !logs.includes(s.secretB64), 'no ticket nor secret in the logs')
})

test('a live SOL connection ends when its console session expires', async (t) => {
  const s = await setup(t)
  const { target, session } = await s.console(s.ctx({ ttlSeconds: 60 }), { ttlSeconds: 4 })
  const c = gateway(s, ticketOf(target) ?? '', session.id)
  await waitFor(() => c.text().startsWith('CLAIMED\nOK\n'), 10_000, 'the SOL session to start')
  let closedAt: number | undefined
  void c.closed.then(() => { closedAt = Date.now() })
  await waitFor(() => closedAt, 15_000, 'the bridge to close the connection at the session\'s expiry')
  assert.ok((closedAt ?? 0) >= Date.parse(session.expiresAt) - 50, 'not before the expiry (timers may round by a millisecond)')
  await waitFor(async () => (await ipmitoolPids(s.sim.port, 'activate')).length === 0, 6000, 'ipmitool to exit', 50)
})

test('an expired ticket is refused without reaching the BMC; a wrong BMC password is an auth refusal', async (t) => {
  const s = await setup(t)
  // A ticket and its session past their lifetime.
  const short = await s.console(s.ctx({ ttlSeconds: 1 }), { ttlSeconds: 1 })
  await waitFor(async () => (await s.tickets.sessionsLive([short.session.id]))[0] === false, 5000, 'the session to expire', 100)
  const late = gateway(s, ticketOf(short.target) ?? '', short.session.id)
  await late.closed
  assert.equal(late.text(), 'ERR invalid\n')
  assert.deepEqual(await s.sim.calls(), [])

  const wrong = await s.console(s.ctx({ password: 'not-the-password' }))
  const c = gateway(s, ticketOf(wrong.target) ?? '', wrong.session.id)
  await c.closed
  assert.equal(c.text(), 'CLAIMED\nERR auth\n')
  assert.ok(!s.lines.join('').includes('not-the-password'))
})

test('the bridge listens on 127.0.0.1 unless told otherwise, and needs the secret where ipmi is served', async (t) => {
  const key = testSecretKey()
  const transit = testSecretKey()
  assert.throws(() => readConfig({ PORTHOLE_SECRET_KEY: key, CONSOLE_TRANSIT_KEY: transit }), (e: unknown) => (e as { variable?: string }).variable === 'SOL_BRIDGE_SECRET')
  assert.throws(() => readConfig({ PORTHOLE_SECRET_KEY: key, CONSOLE_TRANSIT_KEY: transit, SOL_BRIDGE_SECRET: randomBytes(16).toString('base64') }), (e: unknown) => (e as { variable?: string }).variable === 'SOL_BRIDGE_SECRET')
  assert.equal(readConfig({ PORTHOLE_SECRET_KEY: key, CONSOLE_TRANSIT_KEY: transit, AGENT_TYPES: 'kvm' }).SOL_BRIDGE_SECRET, undefined)
  const c = readConfig({ PORTHOLE_SECRET_KEY: key, CONSOLE_TRANSIT_KEY: transit, SOL_BRIDGE_SECRET: randomBytes(32).toString('base64'), SOL_BRIDGE_PORT: '0' })
  const svc = await services()
  const log = createLogger({ name: 'agents-test', level: 'silent' })
  const redis = createRedis(svc.redisUrl, log, 'sol-bind-test')
  const box = SecretBox.fromSettings(c)
  const bridge = await startSolBridge({ host: c.SOL_BRIDGE_HOST, port: c.SOL_BRIDGE_PORT, tickets: new SolTickets(redis, box, uniqueNamespace()), secret: Buffer.from(c.SOL_BRIDGE_SECRET ?? '', 'base64'), ipmitool: 'ipmitool', log })
  t.after(async () => { await bridge.close(); await redis.quit() })
  // Asked of the kernel: the one listening socket on the bridge's port is bound to 127.0.0.1 (0100007F).
  assert.deepEqual(await listeningOn(bridge.port), ['0100007F'])
})

test('without a bridge, and for other agent types, serial is unsupported', async () => {
  const d = createIpmiDriver({ minIntervalMs: 50 })
  const ctx = agentContext({ agent: 'ipmi', connection: { host: '127.0.0.1', username: 'u' }, secrets: { connection: { password: 'p' } } })
  await assert.rejects(d.consoleTarget(ctx, 'serial'), (err: unknown) => err instanceof PortholeError && err.code === 'unsupported')
})
