import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { tinyDomain, waitFor, type TinyDomain } from '@porthole/testkit'
import { CONSOLE_CLOSE, type ConsoleTarget, type Sealed } from '@porthole/contracts'
import { createLogger } from '@porthole/shared/logging'
import { freePort } from '@porthole/testkit'
import { readConfig } from '../src/config.js'
import { startGateway } from '../src/service.js'
import { SecretBox } from '@porthole/shared/crypto'
import { fileScope, harness, openViewer, rfbHandshake, solBridge, vncTarget, type Harness } from './support.js'

const PASSWORD = 's3cret'
const suite = fileScope(after)
let h: Harness
let vm: TinyDomain
let target: ConsoleTarget
/** The gateway's own box (CONSOLE_KEY, as the stack starts it), to read what a session keeps sealed. */
const consoleBox = (): SecretBox => SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: h.stack.consoleKey, PORTHOLE_SECRET_KEY_ID: 'c1', PORTHOLE_OLD_SECRET_KEYS: '' })

before(async () => {
  // Debug level, so that the log check at the end sees every line the gateway can write.
  ;[h, vm] = await Promise.all([
    harness(suite, { envFor: { 'console-gateway': { LOG_LEVEL: 'debug' } } }),
    tinyDomain(suite, { vncPassword: PASSWORD })
  ])
  target = await vncTarget(await vm.vncPort(), PASSWORD)
})

test('a minted session opens the VM\'s VNC console; the gateway answers the VNC password itself', async (t) => {
  const t0 = performance.now()
  const m = await h.mint({ target, serverName: 'web-1' })
  t.diagnostic(`mint request → URL handed over: ${(performance.now() - t0).toFixed(1)} ms`)
  assert.match(m.grant.url, new RegExp(`^${h.stack.gatewayUrl}/s/${m.sessionId}#[A-Za-z0-9_-]{43}$`))
  assert.equal(m.grant.protocol, 'vnc')
  const stored = await h.sessions.get(m.sessionId)
  assert.ok(stored !== undefined)
  assert.notEqual(stored.tokenHash, m.token)
  assert.ok(!JSON.stringify(stored).includes(m.token), 'Redis holds only the token\'s hash')
  assert.ok(!JSON.stringify(stored).includes(PASSWORD), 'the target is sealed at rest')
  const t1 = performance.now()
  const v = openViewer(h, m.sessionId, m.token)
  const init = await rfbHandshake(v)
  t.diagnostic(`WebSocket open → VM's ServerInit through the gateway: ${(performance.now() - t1).toFixed(1)} ms`)
  assert.deepEqual(init.offered, [1], 'the browser is offered only "None": the password stays in the gateway')
  assert.equal(init.name, `QEMU (${vm.name})`) // QEMU names the desktop after the domain: we reached this VM
  assert.ok(init.width > 0 && init.height > 0)
  const [connected] = await h.sessions.connected([m.sessionId])
  assert.equal(connected, true)
  v.ws.close()
  await v.closed
})

test('the job succeeds with the session, and the token-bearing URL is handed over sealed and once', async () => {
  const m = await h.mint({ target })
  const rec = await h.jobs.get(m.jobId)
  assert.equal(rec?.state, 'succeeded')
  assert.deepEqual(rec?.result, { sessionId: m.grant.sessionId, protocol: m.grant.protocol, expiresAt: m.grant.expiresAt })
  assert.ok(Date.parse(m.grant.expiresAt) - Date.now() > 590_000)
  // Neither the job update on the wire nor anything left in Redis holds the token.
  assert.ok(!JSON.stringify(m.update).includes(m.token))
  assert.equal(await h.sessions.takeUrlHandover(m.jobId), undefined, 'the URL hand-over was taken once already')
  const keys = await h.redis.keys(`${h.stack.ns}:*`)
  const values = await Promise.all(keys.map(async k => (await h.redis.type(k)) === 'string' ? await h.redis.get(k) : ''))
  assert.ok(!values.join('\n').includes(m.token))
})

test('a target sealed for another job does not open: the job fails with a classed error', async () => {
  const { update } = await h.publishMint({ target, aad: randomUUID() })
  assert.equal(update.state, 'failed')
  assert.equal(update.error?.code, 'internal')
  assert.equal(update.error?.retryable, false)
  assert.ok(!JSON.stringify(update).includes(PASSWORD))
})

test('a wrong VNC password is refused by the target and the viewer is told', async () => {
  const m = await h.mint({ target: { ...target, password: 'wrong' } })
  const v = openViewer(h, m.sessionId, m.token)
  await v.opened
  const c = await v.closed
  assert.equal(c.code, CONSOLE_CLOSE.targetAuth.code)
  assert.equal(c.reason, 'target-auth')
})

test('an unreachable target closes with 4005 unreachable', async () => {
  const m = await h.mint({ target: { kind: 'vnc', host: '127.0.0.1', port: 1 } })
  const v = openViewer(h, m.sessionId, m.token)
  const c = await v.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.unreachable.code, CONSOLE_CLOSE.unreachable.reason])
})

test('an unknown token is refused', async () => {
  const m = await h.mint({ target })
  const v = openViewer(h, m.sessionId, randomBytes(32).toString('base64url'))
  const c = await v.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.invalid.code, CONSOLE_CLOSE.invalid.reason])
})

test('no token at all is refused', async () => {
  const m = await h.mint({ target })
  const v = openViewer(h, m.sessionId, undefined)
  const c = await v.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.invalid.code, CONSOLE_CLOSE.invalid.reason])
})

test('a forged token (right shape, never issued) for an unknown session is refused', async () => {
  const v = openViewer(h, randomUUID(), randomBytes(32).toString('base64url'))
  const c = await v.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.invalid.code, CONSOLE_CLOSE.invalid.reason])
})

test('a bit-flipped token is refused', async () => {
  const m = await h.mint({ target })
  const raw = Buffer.from(m.token, 'base64url')
  raw[7] = (raw[7] as number) ^ 0x01
  const v = openViewer(h, m.sessionId, raw.toString('base64url'))
  const c = await v.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.invalid.code, CONSOLE_CLOSE.invalid.reason])
  // and the genuine token still works
  const ok = openViewer(h, m.sessionId, m.token)
  await rfbHandshake(ok)
  ok.ws.close()
  await ok.closed
})

test('a token used on another session\'s path is refused', async () => {
  const a = await h.mint({ target })
  const b = await h.mint({ target })
  const v = openViewer(h, b.sessionId, a.token)
  const c = await v.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.invalid.code, CONSOLE_CLOSE.invalid.reason])
  const info = await fetch(`${h.stack.gatewayUrl}/s/${b.sessionId}/info`, { headers: { authorization: `Bearer ${a.token}` } })
  assert.equal(info.status, 401)
})

test('a WebSocket from a foreign Origin is refused with 403 before the upgrade', async () => {
  const m = await h.mint({ target })
  const v = openViewer(h, m.sessionId, m.token, { origin: 'https://evil.example' })
  await assert.rejects(v.opened, (err: Error & { status?: number }) => err.status === 403)
  const none = openViewer(h, m.sessionId, m.token, { origin: '' })
  await assert.rejects(none.opened, (err: Error & { status?: number }) => err.status === 403)
  // the refusal did not consume or break the session
  const ok = openViewer(h, m.sessionId, m.token)
  await rfbHandshake(ok)
  ok.ws.close()
  await ok.closed
})

test('a single-use token opens once; the second use is refused as used', async () => {
  const m = await h.mint({ target, singleUse: true })
  const first = openViewer(h, m.sessionId, m.token)
  await rfbHandshake(first)
  const second = openViewer(h, m.sessionId, m.token)
  const c = await second.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.used.code, CONSOLE_CLOSE.used.reason])
  assert.equal(first.ws.readyState, first.ws.OPEN, 'the refused reuse does not disturb the first viewer')
  const info = await fetch(`${h.stack.gatewayUrl}/s/${m.sessionId}/info`, { headers: { authorization: `Bearer ${m.token}` } })
  assert.equal(info.status, 410)
  assert.equal((await info.json() as { reason: string }).reason, 'used')
  first.ws.close()
  await first.closed
})

test('a second viewer replaces the first, which is closed with 4003 replaced', async () => {
  const m = await h.mint({ target })
  const first = openViewer(h, m.sessionId, m.token)
  await rfbHandshake(first)
  const second = openViewer(h, m.sessionId, m.token)
  await rfbHandshake(second)
  const c = await first.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.replaced.code, CONSOLE_CLOSE.replaced.reason])
  assert.equal(second.ws.readyState, second.ws.OPEN)
  second.ws.close()
  await second.closed
})

test('a viewer on another replica replaces this one, and revocation reaches every replica', async () => {
  // A second gateway replica, in process, sharing Redis and RabbitMQ with the first.
  const port = await freePort()
  const second = await startGateway(readConfig({
    RABBITMQ_URL: h.stack.svc.rabbitmqUrl,
    REDIS_URL: h.stack.svc.redisUrl,
    PORTHOLE_NAMESPACE: h.stack.ns,
    CONSOLE_TRANSIT_KEY: h.stack.transitKey,
    CONSOLE_KEY: h.stack.consoleKey,
    GATEWAY_HOST: '127.0.0.1',
    GATEWAY_PORT: String(port),
    GATEWAY_METRICS_PORT: '0',
    PUBLIC_GATEWAY_URL: h.stack.gatewayUrl
  }), createLogger({ name: 'console-gateway-2', level: 'silent' }))
  try {
    const m = await h.mint({ target })
    const first = openViewer(h, m.sessionId, m.token)
    await rfbHandshake(first)
    const other = openViewer(h, m.sessionId, m.token, { path: `/s/${m.sessionId}/ws`, base: `ws://127.0.0.1:${port}` })
    await rfbHandshake(other)
    const c = await first.closed
    assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.replaced.code, CONSOLE_CLOSE.replaced.reason])
    const s = await h.sessions.get(m.sessionId)
    assert.ok(s !== undefined)
    const at = Date.now()
    await h.sessions.revoke(s)
    const c2 = await other.closed
    assert.deepEqual([c2.code, c2.reason], [CONSOLE_CLOSE.revoked.code, CONSOLE_CLOSE.revoked.reason])
    assert.ok(c2.at - at < 1000)
  } finally {
    await second.close()
  }
})

test('revoking a session closes its live socket within a second, and the token is refused after', async (t) => {
  const m = await h.mint({ target })
  const v = openViewer(h, m.sessionId, m.token)
  await rfbHandshake(v)
  const s = await h.sessions.get(m.sessionId)
  assert.ok(s !== undefined)
  const at = Date.now()
  assert.equal(await h.sessions.revoke(s), true)
  const c = await v.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.revoked.code, CONSOLE_CLOSE.revoked.reason])
  t.diagnostic(`socket closed ${c.at - at} ms after the revocation`)
  assert.ok(c.at - at < 1000, `closed ${c.at - at} ms after the revocation`)
  const again = openViewer(h, m.sessionId, m.token)
  const c2 = await again.closed
  assert.deepEqual([c2.code, c2.reason], [CONSOLE_CLOSE.revoked.code, CONSOLE_CLOSE.revoked.reason])
})

test('at expiry the gateway closes the socket with 4001 expired, and the token is refused after', async () => {
  const m = await h.mint({ target, ttlSeconds: 10 })
  const expiresAt = Date.parse(m.grant.expiresAt)
  const v = openViewer(h, m.sessionId, m.token)
  await rfbHandshake(v)
  const c = await v.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.expired.code, CONSOLE_CLOSE.expired.reason])
  assert.ok(c.at >= expiresAt - 50 && c.at - expiresAt < 1000, `closed ${c.at - expiresAt} ms from the expiry`)
  const again = openViewer(h, m.sessionId, m.token)
  const c2 = await again.closed
  assert.deepEqual([c2.code, c2.reason], [CONSOLE_CLOSE.expired.code, CONSOLE_CLOSE.expired.reason])
})

test('the console page is served with no-referrer, a strict CSP and no-store', async () => {
  const m = await h.mint({ target })
  const res = await fetch(`${h.stack.gatewayUrl}/s/${m.sessionId}`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('referrer-policy'), 'no-referrer')
  assert.equal(res.headers.get('cache-control'), 'no-store')
  assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'.*script-src 'self'/)
  const html = await res.text()
  assert.ok(!html.includes('test-server') && !html.includes(m.token))
  assert.doesNotMatch(html, /(src|href)="\//, 'asset paths are relative')
  const asset = await fetch(`${h.stack.gatewayUrl}/s/assets/novnc/core/rfb.js`)
  assert.equal(asset.status, 200)
  const escape = await fetch(`${h.stack.gatewayUrl}/s/assets/novnc/core/..%2F..%2F..%2Fpackage.json`)
  assert.equal(escape.status, 404)
})

test('a serial console page keeps the strict CSP (no inline styles), and its terminal is served', async (t) => {
  const vnc = await h.mint({ target })
  const bridge = await solBridge(t, h.stack.solBridgeSecret)
  const serial = await h.mint({ protocol: 'serial', target: bridge.target })
  const [vncPage, serialPage] = await Promise.all([vnc, serial].map(async m => await fetch(`${h.stack.gatewayUrl}/s/${m.sessionId}`)))
  for (const res of [vncPage, serialPage]) {
    assert.equal(res?.status, 200)
    const csp = res?.headers.get('content-security-policy') ?? ''
    assert.match(csp, /(^|; )style-src 'self'(;|$)/)
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/)
  }
  assert.equal(serialPage?.headers.get('content-security-policy'), vncPage?.headers.get('content-security-policy'))
  // The unbundled page's modules: serial.js and xterm.js's files from the installed packages.
  for (const [path, type] of [['serial.js', 'javascript'], ['xterm/xterm.mjs', 'javascript'], ['xterm/addon-fit.mjs', 'javascript'], ['xterm/xterm.css', 'css']] as const) {
    const res = await fetch(`${h.stack.gatewayUrl}/s/assets/${path}`)
    assert.equal(res.status, 200, path)
    assert.match(res.headers.get('content-type') ?? '', new RegExp(`^text/${type}`), path)
  }
  for (const path of ['xterm/package.json', 'xterm/xterm.js', 'xterm/..%2Fxterm.mjs']) assert.equal((await fetch(`${h.stack.gatewayUrl}/s/assets/${path}`)).status, 404, path)
})

test('a used single-use link\'s look-up tells its holder the protocol, and nobody else', async (t) => {
  const bridge = await solBridge(t, h.stack.solBridgeSecret)
  const m = await h.mint({ protocol: 'serial', target: bridge.target, singleUse: true })
  const v = openViewer(h, m.sessionId, m.token)
  await v.opened
  await waitFor(async () => (await h.sessions.get(m.sessionId))?.usedAt !== undefined, 5000, 'the link to be used')
  const info = async (token: string): Promise<{ status: number, body: Record<string, unknown> }> => {
    const res = await fetch(`${h.stack.gatewayUrl}/s/${m.sessionId}/info`, { headers: { authorization: `Bearer ${token}` } })
    return { status: res.status, body: await res.json() as Record<string, unknown> }
  }
  const used = await info(m.token)
  assert.equal(used.status, 410)
  assert.deepEqual([used.body.reason, used.body.protocol], ['used', 'serial'])
  const other = await info(m.token.slice(0, -2) + (m.token.endsWith('AA') ? 'BB' : 'AA'))
  assert.equal(other.status, 401)
  assert.equal(other.body.protocol, undefined)
  v.ws.close()
  await v.closed
})

test('a serial session reconnects with the successor of its spent bridge ticket, kept sealed in the session', async (t) => {
  const bridge = await solBridge(t, h.stack.solBridgeSecret)
  const m = await h.mint({ protocol: 'serial', target: bridge.target })
  const before = await h.sessions.get(m.sessionId)
  for (const word of ['one', 'two', 'three']) {
    const v = openViewer(h, m.sessionId, m.token)
    await v.opened
    v.ws.send(Buffer.from(word))
    const echo = await Promise.race([v.read(word.length), new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`${word} was not echoed`)), 10_000).unref())])
    assert.equal(echo.toString('latin1'), word.toUpperCase())
    v.ws.close()
    await v.closed
  }
  // The fake bridge took each ticket once; the session's sealed target changed with each, and holds no ticket in clear.
  assert.ok(bridge.received().includes('onetwothree'))
  const after = await h.sessions.get(m.sessionId)
  assert.notDeepEqual(after?.target, before?.target)
  const first = bridge.target.kind === 'sol' ? bridge.target.ticket : undefined
  assert.ok(first !== undefined && !JSON.stringify(after).includes(first))
  // Opened with the gateway's own key: the successor under `ticket`, and no `password` beside it.
  const kept = consoleBox().open<Record<string, unknown>>(after?.target as Sealed, m.sessionId)
  assert.deepEqual(Object.keys(kept).sort(), ['host', 'kind', 'port', 'ticket'])
  assert.notEqual(kept.ticket, first)
})

test('a serial target sealed before `ticket` (the ticket as `password`) still connects, and is kept as `ticket` alone', async (t) => {
  const bridge = await solBridge(t, h.stack.solBridgeSecret)
  const ticket = bridge.target.kind === 'sol' ? bridge.target.ticket : undefined
  const m = await h.mint({ protocol: 'serial', target: { kind: 'sol', host: bridge.target.host, port: bridge.target.port, password: ticket } })
  const v = openViewer(h, m.sessionId, m.token)
  await v.opened
  v.ws.send(Buffer.from('old'))
  const echo = await Promise.race([v.read(3), new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('not echoed')), 10_000).unref())])
  assert.equal(echo.toString('latin1'), 'OLD')
  v.ws.close()
  await v.closed
  const kept = await waitFor(async () => {
    const s = await h.sessions.get(m.sessionId)
    const target = s === undefined ? undefined : consoleBox().open<Record<string, unknown>>(s.target, m.sessionId)
    return target !== undefined && target.ticket !== undefined ? target : undefined
  }, 10_000, 'the successor kept in the session')
  assert.equal(kept.password, undefined, 'the earlier name is not written again')
  assert.ok(!h.stack.logs().includes(ticket ?? '-'), 'the ticket is in no log line')
})

test('a gateway without SOL_BRIDGE_SECRET mints no serial session', async (t) => {
  await h.stack.stop('console-gateway')
  t.after(async () => { await h.stack.stop('console-gateway'); await h.stack.start('console-gateway', { LOG_LEVEL: 'debug' }) })
  await h.stack.start('console-gateway', { LOG_LEVEL: 'debug', SOL_BRIDGE_SECRET: '' })
  const bridge = await solBridge(t, h.stack.solBridgeSecret)
  const { update } = await h.publishMint({ protocol: 'serial', target: bridge.target })
  assert.equal(update.state, 'failed')
  assert.equal(update.error?.code, 'unsupported')
  assert.match(h.stack.logs(), /SOL_BRIDGE_SECRET is not set/)
})

test('a console target the protocol cannot reach fails the job as unsupported', async () => {
  const { update } = await h.publishMint({ target: { kind: 'sol', host: '127.0.0.1', port: 623 } })
  assert.equal(update.state, 'failed')
  assert.equal(update.error?.code, 'unsupported')
  // and a serial console needs an agent's serial-over-LAN bridge, not a VNC server
  const serial = await h.publishMint({ protocol: 'serial', target: { kind: 'vnc', host: '127.0.0.1', port: 5900 } })
  assert.equal(serial.update.state, 'failed')
  assert.equal(serial.update.error?.code, 'unsupported')
})

test('a malformed mint request is dead-lettered and its job failed as poison', async () => {
  const jobId = randomUUID()
  const update = await h.publishRaw({ job: { id: jobId }, target: 'nonsense' }, jobId)
  assert.equal(update.state, 'failed')
  assert.equal(update.error?.code, 'poison')
})

test('a viewer message over 1 MiB closes that viewer (1009), and the gateway serves the next one', async () => {
  const m = await h.mint({ target })
  const v = openViewer(h, m.sessionId, m.token)
  await v.opened
  v.ws.send(Buffer.alloc(1024 * 1024 + 1))
  const c = await v.closed
  assert.equal(c.code, 1009)
  const again = openViewer(h, m.sessionId, m.token)
  await again.opened
  await rfbHandshake(again)
  again.ws.close()
})

test('the gateway\'s logs hold no token and no VNC password', async () => {
  assert.ok(h.tokens.length >= 10)
  const logs = h.stack.logs()
  assert.ok(logs.includes('console viewer connected'), 'the logs were captured')
  for (const t of h.tokens) assert.ok(!logs.includes(t), 'a token appears in the logs')
  assert.ok(!logs.includes(PASSWORD), 'the VNC password appears in the logs')
  assert.ok(!logs.includes('"wrong"') && !logs.includes(h.stack.consoleKey) && !logs.includes(h.stack.secretKey) && !logs.includes(h.stack.solBridgeSecret))
})

test('SIGTERM closes live viewers with 1001 shutdown and the gateway exits 0', async () => {
  const m = await h.mint({ target })
  const v = openViewer(h, m.sessionId, m.token)
  await rfbHandshake(v)
  const proc = h.stack.procs.get('console-gateway')
  assert.ok(proc !== undefined)
  const exited = new Promise<number | null>(resolve => proc.once('exit', code => resolve(code)))
  await h.stack.stop('console-gateway')
  const c = await v.closed
  assert.deepEqual([c.code, c.reason], [CONSOLE_CLOSE.shutdown.code, CONSOLE_CLOSE.shutdown.reason])
  assert.equal(await exited, 0)
})
