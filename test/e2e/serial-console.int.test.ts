// A serial console (IPMI Serial-over-LAN) through the whole system: API → receiver → ipmi agent (bridge
// ticket) → gateway → the agent's SOL bridge → ipmitool sol activate → ipmi_sim → the host's serial port (a
// test-owned TCP server playing a getty). Neither the BMC password nor a token reaches a log line.
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { CONSOLE_CLOSE } from '@porthole/contracts'
import { WebSocket } from 'ws'
import { tinyDomain, waitFor } from '@porthole/testkit'
import { launchChromium, pageProblems } from '@porthole/testkit/chromium'
import * as sims from '@porthole/testkit/ipmi'
import { fileStack, kvmServer, tenant } from './fixtures.js'


const stack = await fileStack()
const acme = await tenant(stack)
const scope = { after: (fn: () => Promise<void>) => { after(fn) } }
const device = await sims.startSerialDevice(scope)
const bmc = await sims.startIpmiSim(scope, { power: 'on', sol: device.device })
const secrets: string[] = [bmc.password]

const created = await stack.api('POST', '/v1/servers', {
  name: 'metal-1', tenantId: acme.tenantId, agent: 'ipmi',
  connection: { host: bmc.host, port: bmc.port, username: bmc.username, password: bmc.password, cipherSuite: 3 }
})
assert.equal(created.status, 201, JSON.stringify(created.body))
const serverId = created.body.id as string

async function serialConsole (): Promise<{ url: string, token: string }> {
  const r = await stack.api('POST', `/v1/servers/${serverId}/console`, { protocol: 'serial', ttlSeconds: 300 }, { key: acme.customerKey })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  assert.equal(r.body.protocol, 'serial')
  const token = new URL(r.body.url).hash.slice(1)
  secrets.push(token)
  return { url: r.body.url, token }
}

test('a serial console URL relays the host\'s serial port over the WebSocket', async () => {
  const { url, token } = await serialConsole()
  const u = new URL(url)
  const ws = new WebSocket(`ws://${u.host}${u.pathname}/ws`, ['binary', `porthole.token.${token}`], { headers: { origin: u.origin } })
  let text = ''
  ws.on('message', (d: Buffer) => { text += d.toString('latin1') })
  const closed = new Promise<number>(resolve => ws.once('close', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  // Enter until the getty's prompt comes back (the line is silent until something is typed, as on real hardware).
  await waitFor(async () => {
    if (text.includes(device.banner)) return true
    ws.send(Buffer.from('\r'))
    return false
  }, 20_000, 'the banner through the gateway', 500)
  ws.send(Buffer.from('abc'))
  await waitFor(() => text.includes('ABC'), 10_000, 'the echo from the serial device')
  ws.close()
  assert.equal(await closed, 1005)
})

/** A viewer of a serial console URL: what it received, and its close. */
function serialViewer (url: string, token: string): { ws: WebSocket, text: () => string, opened: Promise<void>, closed: Promise<{ code: number, at: number }> } {
  const u = new URL(url)
  const ws = new WebSocket(`ws://${u.host}${u.pathname}/ws`, ['binary', `porthole.token.${token}`], { headers: { origin: u.origin } })
  let text = ''
  ws.on('message', (d: Buffer) => { text += d.toString('latin1') })
  const closed = new Promise<{ code: number, at: number }>(resolve => ws.once('close', (code) => resolve({ code, at: Date.now() })))
  const opened = new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  return { ws, text: () => text, opened, closed }
}

async function echoes (v: ReturnType<typeof serialViewer>, word: string): Promise<void> {
  await v.opened
  await waitFor(async () => {
    if (v.text().includes(word.toUpperCase())) return true
    if (v.ws.readyState === v.ws.OPEN) v.ws.send(Buffer.from(word))
    return false
  }, 20_000, `${word} echoed through the serial console`, 500)
}

test('a serial console reconnects and is taken over with single-use bridge tickets, and revocation ends it', async () => {
  const { url, token } = await serialConsole()
  const first = serialViewer(url, token)
  await echoes(first, 'one')
  first.ws.close()
  await first.closed
  // The same URL again (a reload): the gateway's next connection to the bridge uses the ticket's successor.
  const second = serialViewer(url, token)
  await echoes(second, 'two')
  // A take-over while the second is live: the second is replaced, the third gets the console.
  const third = serialViewer(url, token)
  assert.equal((await second.closed).code, CONSOLE_CLOSE.replaced.code)
  await echoes(third, 'three')
  const sessionId = new URL(url).pathname.split('/').pop() ?? ''
  const at = Date.now()
  const r = await stack.api('DELETE', `/v1/console-sessions/${sessionId}`, undefined, { key: acme.customerKey })
  assert.ok(r.status === 204 || r.status === 200, JSON.stringify(r.body))
  const c = await third.closed
  assert.equal(c.code, CONSOLE_CLOSE.revoked.code)
  assert.ok(c.at - at < 1000, `closed ${c.at - at} ms after the revocation`)
  const again = serialViewer(url, token)
  assert.equal((await again.closed).code, CONSOLE_CLOSE.revoked.code)
  assert.ok(!stack.logs().includes('console relay failed'))
})

test('the console page shows the serial console in a terminal, and typing reaches the host', async (t) => {
  const browser = await launchChromium(t)
  const { url } = await serialConsole()
  const page = await browser.newPage()
  // CSP violations count too: the page's policy stays strict with xterm.js's run-time styles.
  const errors = await pageProblems(page)
  const response = await page.goto(url)
  assert.match(response?.headers()['content-security-policy'] ?? '', /style-src 'self'(;|$)/, 'the serial page keeps the strict style policy')
  await page.waitForSelector('body[data-connected="true"]', { timeout: 20_000 })
  assert.equal(await page.isVisible('#cad'), false, 'no Ctrl-Alt-Del on a serial line')
  // xterm.js renders its rows as DOM text; the terminal has the keyboard focus.
  const screen = async (): Promise<string> => await page.evaluate('document.querySelector(".xterm-rows")?.textContent ?? ""')
  await waitFor(async () => {
    if ((await screen()).includes(device.banner.trim())) return true
    await page.keyboard.press('Enter')
    return false
  }, 20_000, 'the banner in the terminal', 500)
  await page.keyboard.type('abc')
  await waitFor(async () => (await screen()).includes('ABC'), 10_000, 'ABC from the serial device in the terminal')
  assert.ok(device.received().includes('abc'))
  // xterm.js's run-time rules are in effect (its cell size rule gives each character cell its height).
  const rowHeight = await page.evaluate('document.querySelector(".xterm-rows > div")?.getBoundingClientRect().height ?? 0') as number
  assert.ok(rowHeight > 5, `terminal rows are laid out (${rowHeight}px)`)
  // …and its theme rule (the page's font, not xterm.css's plain `monospace`), though the CSP refuses inline styles.
  assert.match(await page.evaluate('getComputedStyle(document.querySelector(".xterm-rows")).fontFamily') as string, /DejaVu Sans Mono/)
  assert.deepEqual(errors, [], 'no failed requests, script or CSP errors on the page')
  await page.click('#disconnect')
  await page.waitForSelector('body[data-close-reason="user"]')
  await page.close()
})

test('a kvm server has no serial console: 422', async (t) => {
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const r = await stack.api('POST', `/v1/servers/${id}/console`, { protocol: 'serial' }, { key: acme.customerKey })
  assert.equal(r.status, 422, JSON.stringify(r.body))
  assert.equal(r.headers.get('content-type')?.startsWith('application/problem+json'), true)
})

test('no log line holds the BMC password or a token', () => {
  const logs = stack.logs()
  assert.ok(logs.includes('sol session started'))
  for (const s of secrets) assert.ok(!logs.includes(s), 'a secret reached a log line')
})
