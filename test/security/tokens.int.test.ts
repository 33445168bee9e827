// The console token matrix, against a live VM: a tiny libvirt domain, the real gateway, console URLs from
// the API. Forged, bit-flipped, truncated, expired, revoked and foreign tokens, a wrong Origin, a used
// single-use link, and two viewers racing for one single-use link: none gets past authorization but the
// one that should. "Accepted" means a byte of the console came: the gateway sends nothing before the token
// has been checked; the positive controls go on to the VM's own RFB ServerInit.
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { CONSOLE_CLOSE } from '@porthole/contracts'
import { createHash, randomBytes } from 'node:crypto'
import { connect as netConnect } from 'node:net'
import { Redis } from 'ioredis'
import { WebSocket } from 'ws'
import { SecretBox, writeSolHello } from '@porthole/shared/crypto'
import { ConsoleSessionStore } from '@porthole/shared/store'
import { tinyDomain, waitFor } from '@porthole/testkit'
import * as sims from '@porthole/testkit/ipmi'
import { fileStack, kvmServer, tenant } from '../e2e/fixtures.js'
import { consoleAddress, secretsIn, tokensIn, tryViewer, vncViewer, type ConsoleAddress, type ViewerOptions, type ViewerOutcome } from './support.js'

const stack = await fileStack()
// Clean-ups run when the file ends: node:test's `after` called inside a test would run at that test's end.
const cleanups: Array<() => Promise<void>> = []
after(async () => { for (const fn of cleanups.reverse()) await fn() })
const scope = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }
const vncPassword = randomBytes(6).toString('base64url').slice(0, 8)
const dom = await tinyDomain(scope, { vncPassword })
const acme = await tenant(stack, 'tokens-acme')
const globex = await tenant(stack, 'tokens-globex')
const serverX = await kvmServer(stack, acme.tenantId, dom)
const serverY = await kvmServer(stack, acme.tenantId, dom)
const serverG = await kvmServer(stack, globex.tenantId, dom)

/** Every token the API handed out here: no log line may hold one. */
const issued: string[] = []
/** Every forged token presented: no log line may hold one either. */
const forged = new Set<string>()

async function consoleFor (serverId: string, key: string, body: Record<string, unknown> = {}): Promise<ConsoleAddress> {
  const r = await stack.api('POST', `/v1/servers/${serverId}/console`, { ttlSeconds: 600, ...body }, { key })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  const a = consoleAddress(r.body.url)
  issued.push(a.token)
  return a
}

// Made first so that its ten seconds run out while the other cases run; its viewer sees the expiry.
const shortLived = await consoleFor(serverX, acme.customerKey, { ttlSeconds: 10 })
const shortViewer = await vncViewer(shortLived)
const x = await consoleFor(serverX, acme.customerKey)

/** Asserts the gateway said no: an HTTP 4xx to the upgrade or a close with one of its 4xxx codes. */
function refused (o: ViewerOutcome, what: string, code?: number): void {
  if (o.kind === 'accepted') assert.fail(`${what}: accepted`)
  if (o.kind === 'refused') assert.ok(o.status >= 400 && o.status < 500, `${what}: upgrade answered ${o.status}`)
  else if (o.kind === 'closed') assert.ok(code === undefined ? o.code >= 4000 && o.code < 5000 : o.code === code, `${what}: closed ${o.code} ${o.reason}`)
  else assert.fail(`${what}: the gateway did not answer (${o.message})`)
}

/** Presents a forged token (kept for the log check) on the session's path. */
async function present (a: ConsoleAddress, token: string): Promise<ViewerOutcome> {
  forged.add(token)
  return await tryViewer({ ...a, token })
}

test('the valid token reaches the VM: its own ServerInit through the gateway (positive control)', async () => {
  const v = await vncViewer(x)
  assert.ok(v.name.includes(dom.name), `desktop name ${v.name}`)
  v.ws.close()
  await v.closed
})

test('forged tokens are refused', async () => {
  const token = x.token
  const cases: Array<[string, ViewerOptions & { token?: string }]> = [
    ['no token at all', { protocols: ['binary'] }],
    ['an empty token', { protocols: ['binary', 'porthole.token.'] }],
    ['the SHA-256 Redis keeps, hex', { token: createHash('sha256').update(token).digest('hex') }],
    ['the SHA-256 Redis keeps, base64url', { token: createHash('sha256').update(token).digest('base64url') }],
    ['the session id', { token: x.sessionId }],
    ['the session id without dashes', { token: x.sessionId.replaceAll('-', '') }],
    ['the token with its case swapped', { token: [...token].map(c => c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()).join('') }],
    ['the token and one more character', { token: `${token}A` }],
    ['the token twice', { token: token + token }],
    ['the token and a dot', { token: `${token}.` }],
    ['a 129-character token', { token: 'A'.repeat(129) }],
    ['the token in a second, empty protocol', { protocols: ['binary', 'porthole.token.', `porthole.token.${randomBytes(32).toString('base64url')}`] }],
    ...Array.from({ length: 50 }, (_v, i): [string, { token: string }] => [`random token ${i}`, { token: randomBytes(32).toString('base64url') }])
  ]
  for (const [what, o] of cases) {
    // Ids are no secrets (they are in log lines by design): presented, but not searched for afterwards.
    const outcome = o.token === undefined ? await tryViewer(x, o) : what.includes('session id') ? await tryViewer({ ...x, token: o.token }) : await present(x, o.token)
    refused(outcome, what)
  }
  // The token where the gateway never reads it: in the query string or as the path's fragment.
  for (const path of [`${x.sessionId}/ws?token=${token}`, `${x.sessionId}/ws?porthole.token.${token}`]) {
    refused(await tryViewer({ ...x, sessionId: path }, { protocols: ['binary'] }), `token in ${path.replace(token, '<token>')}`)
  }
})

/** `n` tokens that differ from `token` by a few flipped bits: of its bytes mostly, of its characters too. */
function bitFlips (token: string, n: number): string[] {
  const bytes = Buffer.from(token, 'base64url')
  const out = new Set<string>()
  // One bit of each byte first (every single-bit flip), then random flips of 1 to 4 bits.
  for (let bit = 0; bit < bytes.length * 8; bit++) {
    const b = Buffer.from(bytes)
    b[bit >> 3] = (b[bit >> 3] as number) ^ (1 << (bit & 7))
    out.add(b.toString('base64url'))
  }
  const tchar = /^[A-Za-z0-9!#$%&'*+.^_`|~-]$/ // what a subprotocol may hold
  while (out.size < n) {
    if (Math.random() < 0.75) {
      const b = Buffer.from(bytes)
      for (let k = 1 + Math.floor(Math.random() * 4); k > 0; k--) {
        const bit = Math.floor(Math.random() * b.length * 8)
        b[bit >> 3] = (b[bit >> 3] as number) ^ (1 << (bit & 7))
      }
      out.add(b.toString('base64url'))
    } else {
      const i = Math.floor(Math.random() * token.length)
      const c = String.fromCharCode(token.charCodeAt(i) ^ (1 << Math.floor(Math.random() * 7)))
      if (tchar.test(c)) out.add(token.slice(0, i) + c + token.slice(i + 1))
    }
  }
  out.delete(token)
  return [...out]
}

test('10,000 bit-flipped tokens: none accepted, each refused', async () => {
  const variants = bitFlips(x.token, 10_000)
  assert.ok(variants.length >= 9_999)
  const outcomes = new Map<string, number>()
  const wrong: string[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < variants.length) {
      const o = await present(x, variants[next++] as string)
      const label = o.kind === 'refused' ? `http ${o.status}` : o.kind === 'closed' ? `close ${o.code}` : o.kind
      outcomes.set(label, (outcomes.get(label) ?? 0) + 1)
      try { refused(o, 'a bit-flipped token') } catch (err) { wrong.push((err as Error).message) }
    }
  }
  await Promise.all(Array.from({ length: 48 }, worker))
  assert.equal(outcomes.get('accepted') ?? 0, 0, `accepted: ${JSON.stringify([...outcomes])}`)
  // Every one was answered with a refusal: none timed out, none got a stranger answer.
  assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} not refused: ${JSON.stringify([...outcomes])}`)
})

test('truncated tokens are refused', async () => {
  const t = x.token
  for (const cut of [t.slice(0, 1), t.slice(0, 8), t.slice(0, 21), t.slice(0, 22), t.slice(0, 32), t.slice(0, -1), t.slice(1), t.slice(0, t.length / 2)]) {
    refused(await present(x, cut), `a token of ${cut.length} characters`, cut.length >= 22 ? CONSOLE_CLOSE.invalid.code : undefined)
  }
})

test('another session\'s token on this session\'s path is refused: another server, another tenant, the same server', async () => {
  const y = await consoleFor(serverY, acme.customerKey)
  const g = await consoleFor(serverG, globex.customerKey)
  const sibling = await consoleFor(serverX, acme.customerKey)
  for (const [what, other] of [['server Y', y], ['another tenant\'s server', g], ['another session of server X', sibling]] as const) {
    refused(await tryViewer({ ...x, token: other.token }), `${what}'s token on X's path`, CONSOLE_CLOSE.invalid.code)
    refused(await tryViewer({ ...other, token: x.token }), `X's token on ${what}'s path`, CONSOLE_CLOSE.invalid.code)
  }
  // Each of them opens its own session.
  for (const a of [y, g, sibling]) assert.equal((await tryViewer(a)).kind, 'accepted')
})

test('a wrong Origin is refused at the upgrade, whatever the token', async () => {
  const gw = new URL(stack.gatewayUrl)
  const origins = ['http://evil.example', 'null', `http://${gw.hostname}:${Number(gw.port) + 1}`, `https://${gw.host}`, `http://${gw.hostname}.evil.example:${gw.port}`, `${gw.origin}.evil.example`]
  for (const origin of origins) {
    const o = await tryViewer(x, { origin })
    assert.deepEqual(o, { kind: 'refused', status: 403 }, `Origin ${origin}`)
  }
  assert.deepEqual(await tryViewer(x, { origin: null }), { kind: 'refused', status: 403 }, 'no Origin')
})

test('a single-use link opens once', async () => {
  const once = await consoleFor(serverX, acme.customerKey, { singleUse: true })
  const v = await vncViewer(once)
  assert.ok(v.name.includes(dom.name))
  refused(await tryViewer(once), 'the link again while its viewer is open', CONSOLE_CLOSE.used.code)
  v.ws.close()
  await v.closed
  refused(await tryViewer(once), 'the link again after its viewer left', CONSOLE_CLOSE.used.code)
})

test('two viewers racing for one single-use link: exactly one wins', async () => {
  for (let round = 0; round < 3; round++) {
    const once = await consoleFor(serverX, acme.customerKey, { singleUse: true })
    const outcomes = await Promise.all([tryViewer(once), tryViewer(once)])
    assert.equal(outcomes.filter(o => o.kind === 'accepted').length, 1, JSON.stringify(outcomes))
    for (const o of outcomes.filter(o => o.kind !== 'accepted')) refused(o, 'the loser', CONSOLE_CLOSE.used.code)
  }
})

test('a revoked session: its live viewer is closed and its token is refused', async () => {
  const r = await consoleFor(serverX, acme.customerKey)
  const v = await vncViewer(r)
  const del = await stack.api('DELETE', `/v1/console-sessions/${r.sessionId}`, undefined, { key: acme.customerKey })
  assert.equal(del.status, 204)
  assert.equal((await v.closed).code, CONSOLE_CLOSE.revoked.code)
  refused(await tryViewer(r), 'the revoked token', CONSOLE_CLOSE.revoked.code)
})

test('an expired session: its live viewer is closed at expiry and its token is refused', async () => {
  // The gateway's own expiry event: the live viewer's close, bounded well past the ten-second ttl.
  let timer: NodeJS.Timeout | undefined
  const closed = await Promise.race([shortViewer.closed, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('the viewer was not closed at expiry')), 30_000) })])
  clearTimeout(timer)
  assert.equal(closed.code, CONSOLE_CLOSE.expired.code, closed.reason)
  refused(await tryViewer(shortLived), 'the expired token', CONSOLE_CLOSE.expired.code)
})

/** Opens a serial console's WebSocket and presses Enter until the host's banner comes back through it. */
async function serialViewer (a: ConsoleAddress, banner: string): Promise<{ ws: WebSocket, closed: Promise<number> }> {
  const ws = new WebSocket(`${a.gatewayUrl.replace(/^http/, 'ws')}/s/${a.sessionId}/ws`, ['binary', `porthole.token.${a.token}`], { origin: new URL(a.gatewayUrl).origin })
  let text = ''
  ws.on('message', (d: Buffer) => { text += d.toString('latin1') })
  ws.on('error', () => {})
  const closed = new Promise<number>(resolve => ws.once('close', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('close', (code) => reject(new Error(`closed ${code}`))) })
  await waitFor(async () => {
    if (text.includes(banner)) return true
    ws.send(Buffer.from('\r'))
    return false
  }, 30_000, 'the serial banner through the gateway', 300)
  return { ws, closed }
}

/**
 * What the agents' serial-over-LAN bridge answers a ticket with: its first line (`CLAIMED`, `ERR …`), or ''
 * when it closes without a byte. The hello is signed with the stack's SOL_BRIDGE_SECRET, as the gateway signs
 * it, unless `signed` is false.
 */
async function bridgeAnswer (host: string, port: number, ticket: string, sessionId: string, signed = true): Promise<string> {
  const hello = signed ? writeSolHello(Buffer.from(stack.solBridgeSecret, 'base64'), ticket, sessionId).line : `PORTHOLE-SOL ${ticket}\n`
  return await new Promise<string>((resolve, reject) => {
    const sock = netConnect({ host, port }, () => sock.write(hello))
    let buf = ''
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('the bridge did not answer')) }, 30_000)
    sock.setEncoding('latin1').on('data', (d: string) => {
      buf += d
      const i = buf.indexOf('\n')
      if (i !== -1) { clearTimeout(timer); sock.destroy(); resolve(buf.slice(0, i)) }
    })
    sock.once('close', () => { clearTimeout(timer); resolve(buf) })
    sock.once('error', reject)
  })
}

/** The serial session's bridge ticket as the gateway holds it now (sealed in the session with the console key). */
async function heldTicket (sessionId: string): Promise<{ kind: string, host: string, port: number, ticket: string }> {
  const redis = new Redis(stack.svc.redisUrl)
  const session = await new ConsoleSessionStore(redis, stack.ns).get(sessionId)
  redis.disconnect()
  assert.ok(session !== undefined)
  const box = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: stack.consoleKey, PORTHOLE_SECRET_KEY_ID: 'c1', PORTHOLE_OLD_SECRET_KEYS: '' })
  const held = box.open<{ kind: string, host: string, port: number, ticket: string, password?: string }>(session.target, session.id)
  // The ticket under its own name, and nothing beside it that a reader could take for a password.
  assert.equal(held.password, undefined, 'no `password` in a serial target')
  return held
}

/** The serial console of the test below, for the one after it. */
let serialCase: { serial: ConsoleAddress, target: { host: string, port: number, ticket: string }, viewer: { ws: WebSocket, closed: Promise<number> } } | undefined

test('a serial console (IPMI SOL): forged and foreign tokens are refused, at the gateway and at the bridge', async () => {
  const device = await sims.startSerialDevice(scope)
  const bmc = await sims.startIpmiSim(scope, { power: 'on', sol: device.device })
  const created = await stack.api('POST', '/v1/servers', {
    name: 'tokens-metal', tenantId: acme.tenantId, agent: 'ipmi', connection: { host: bmc.host, port: bmc.port, username: bmc.username, password: bmc.password, cipherSuite: 3 }
  })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  const serial = await consoleFor(created.body.id, acme.customerKey, { protocol: 'serial' })
  for (const token of bitFlips(serial.token, 300)) refused(await present(serial, token), 'a bit-flipped serial token', CONSOLE_CLOSE.invalid.code)
  refused(await tryViewer({ ...serial, token: x.token }), "a VNC session's token on the serial session's path", CONSOLE_CLOSE.invalid.code)

  // The bridge ticket, as the gateway holds it.
  const target = await heldTicket(serial.sessionId)
  assert.equal(target.kind, 'sol')
  issued.push(target.ticket)
  for (const forgery of [randomBytes(32).toString('base64url'), target.ticket.slice(0, -1), `${target.ticket}A`, createHash('sha256').update(target.ticket).digest('hex')]) {
    forged.add(forgery)
    assert.match(await bridgeAnswer(target.host, target.port, forgery, serial.sessionId), /^ERR /, 'a forged bridge ticket')
  }
  // Without the gateway's signature even the real ticket gets not a byte.
  assert.equal(await bridgeAnswer(target.host, target.port, target.ticket, serial.sessionId, false), '', 'an unsigned hello')
  // The real one reaches the host: the banner through the gateway (positive control). It stays open for the next test.
  const viewer = await serialViewer(serial, device.banner)
  scope.after(async () => { viewer.ws.terminate() })
  serialCase = { serial, target, viewer }
})

test('a revoked serial console: its live viewer is closed, its token and its bridge ticket refused', async () => {
  assert.ok(serialCase !== undefined, 'the serial console of the test before')
  const { serial, target, viewer: v } = serialCase
  assert.equal((await stack.api('DELETE', `/v1/console-sessions/${serial.sessionId}`, undefined, { key: acme.customerKey })).status, 204)
  assert.equal(await v.closed, CONSOLE_CLOSE.revoked.code)
  refused(await tryViewer(serial), 'the revoked serial token', CONSOLE_CLOSE.revoked.code)
  // The session is revoked: the ticket the gateway holds for it now, signed as the gateway signs, must not open
  // the BMC's serial console either.
  const held = await heldTicket(serial.sessionId)
  issued.push(held.ticket)
  assert.match(await bridgeAnswer(target.host, target.port, held.ticket, serial.sessionId), /^ERR /, 'the ticket of a revoked session')
})

test('no token, valid or forged, and not the VNC password, is in any log line', () => {
  const logs = stack.logs()
  assert.ok(forged.size >= 10_000)
  assert.equal(tokensIn(logs, forged), 0, 'forged tokens in the logs')
  assert.deepEqual(secretsIn(logs, { vncPassword, ...Object.fromEntries(issued.map((t, i) => [`issued token ${i}`, t])) }), [])
  assert.ok(logs.includes('console viewer refused'), 'the gateway logged its refusals (the logs were read)')
})
