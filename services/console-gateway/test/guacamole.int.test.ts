/**
 * The guacamole path up to guacd's door. guacd is not installed here, so a TCP listener of the test's own
 * stands where guacd would (GUACD_HOST/GUACD_PORT) and records what guacamole-lite sends: the `select`
 * instruction and the `connect` arguments prove that the token the gateway built decoded to the right
 * target, and the arrival times show the socket to guacd has Nagle's algorithm off. The console page in
 * Chromium drives it too, and reconnects by itself when its socket drops.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'
import { freePort, waitFor } from '@porthole/testkit'
import { fileScope, harness, launchChromium, openViewer, type Harness } from './support.js'

const suite = fileScope(after)
const PASSWORD = 'gu4c-pw'
let h: Harness
let guacd: FakeGuacd

interface Instruction { op: string, args: string[], at: number }

/** Encodes a Guacamole protocol instruction. */
const instr = (...parts: string[]): string => parts.map(p => `${[...p].length}.${p}`).join(',') + ';'

/** Splits a Guacamole protocol stream into instructions (lengths count characters). */
function parseAll (buf: string): { done: string[][], rest: string } {
  const done: string[][] = []
  let i = 0
  let cur: string[] = []
  for (;;) {
    const dot = buf.indexOf('.', i)
    if (dot === -1) break
    const n = Number(buf.slice(i, dot))
    if (dot + 1 + n >= buf.length) break
    cur.push(buf.slice(dot + 1, dot + 1 + n))
    const term = buf[dot + 1 + n]
    i = dot + 2 + n
    if (term === ';') { done.push(cur); cur = [] }
    if (term !== ',' && term !== ';') throw new Error('bad guacamole stream')
  }
  // an incomplete instruction stays in the buffer whole
  const consumed = done.length === 0 ? 0 : lastEnd(buf, done)
  return { done, rest: buf.slice(consumed) }
}
function lastEnd (buf: string, done: string[][]): number {
  let i = 0
  for (const ins of done) for (const p of ins) { const dot = buf.indexOf('.', i); i = dot + 2 + Number(buf.slice(i, dot)); void p }
  return i
}

class FakeGuacd {
  readonly received: Instruction[] = []
  readonly sockets = new Set<Socket>()
  server: Server | undefined
  port = 0
  readonly connectionId = `$${randomUUID()}`

  async start (): Promise<void> {
    this.port = await freePort()
    this.server = createServer(sock => {
      this.sockets.add(sock)
      sock.on('close', () => this.sockets.delete(sock))
      sock.on('error', () => {})
      sock.setNoDelay(true)
      let buf = ''
      sock.on('data', (d: Buffer) => {
        const at = performance.now()
        buf += d.toString('utf8')
        const { done, rest } = parseAll(buf)
        buf = rest
        for (const [op, ...args] of done) {
          this.received.push({ op: op as string, args, at })
          if (op === 'select') sock.write(instr('args', 'VERSION_1_1_0', 'hostname', 'port', 'password'))
          if (op === 'connect') sock.write(instr('ready', this.connectionId) + instr('size', '0', '640', '480') + instr('sync', '1'))
        }
      })
    })
    await new Promise<void>(resolve => this.server?.listen(this.port, '127.0.0.1', resolve))
  }

  async stop (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(resolve => this.server?.close(() => resolve()))
  }

  find (op: string, from = 0): Instruction | undefined { return this.received.slice(from).find(i => i.op === op) }
}

before(async () => {
  guacd = new FakeGuacd()
  await guacd.start()
  suite.after(async () => { await guacd.stop() })
  h = await harness(suite, { envFor: { 'console-gateway': { GUACD_HOST: '127.0.0.1', GUACD_PORT: String(guacd.port) } } })
})

test('a guacamole session reaches guacd with the target decoded from the gateway\'s own guacamole-lite token', async (t) => {
  const from = guacd.received.length
  const target = { kind: 'vnc' as const, host: '192.0.2.10', port: 5901, password: PASSWORD }
  const m = await h.mint({ target, protocol: 'guacamole' })
  assert.equal(m.grant.protocol, 'guacamole')
  const v = openViewer(h, m.sessionId, m.token, { protocol: 'guacamole' })
  await v.opened
  assert.equal(v.ws.protocol, 'guacamole', 'the viewer\'s own subprotocol is echoed, never the token one')
  const messages: string[] = []
  v.ws.on('message', (d: Buffer) => messages.push(d.toString('utf8')))
  await waitFor(() => guacd.find('connect', from), 5000, 'guacamole-lite\'s connect')
  assert.deepEqual(guacd.find('select', from)?.args, ['vnc'])
  assert.deepEqual(guacd.find('connect', from)?.args, ['VERSION_1_1_0', '192.0.2.10', '5901', PASSWORD])
  // The viewer gets guacd's connection id and the stream that follows.
  await waitFor(() => messages.join('').includes(guacd.connectionId) && messages.join('').includes('4.size,'), 5000, 'guacd\'s stream at the viewer')
  assert.ok(!messages.join('').includes(PASSWORD), 'nothing guacd is told reaches the viewer')

  // Nagle off: the six instructions guacamole-lite writes after `args` arrive together, not ~40 ms apart.
  const size = guacd.find('size', from) as Instruction
  const connect = guacd.find('connect', from) as Instruction
  t.diagnostic(`size → connect at guacd's door: ${(connect.at - size.at).toFixed(2)} ms`)
  assert.ok(connect.at - size.at < 20, `the handshake reply took ${(connect.at - size.at).toFixed(1)} ms to arrive`)

  // Revocation closes the viewer, and guacamole-lite's socket to guacd with it.
  const s = await h.sessions.get(m.sessionId)
  assert.ok(s !== undefined)
  await h.sessions.revoke(s)
  const c = await v.closed
  assert.deepEqual([c.code, c.reason], [4002, 'revoked'])
  await waitFor(() => guacd.sockets.size === 0, 3000, 'the guacd socket to close')
})

test('a guacamole token from the browser is never accepted: the guacd door sees only what the gateway built', async () => {
  const m = await h.mint({ target: { kind: 'vnc', host: '192.0.2.11', port: 5902 }, protocol: 'guacamole' })
  const from = guacd.received.length
  // A browser that tries guacamole-lite's own `?token=` gets no say: the query is ignored.
  const v = openViewer(h, m.sessionId, m.token, { protocol: 'guacamole', path: `/s/${m.sessionId}/ws?token=eyJmb3JnZWQiOnRydWV9` })
  await v.opened
  await waitFor(() => guacd.find('connect', from), 5000, 'guacamole-lite\'s connect')
  assert.deepEqual(guacd.find('connect', from)?.args.slice(1, 3), ['192.0.2.11', '5902'])
  v.ws.close()
  await v.closed
})

test('the console page drives guacamole-common-js through the gateway to guacd', async (t) => {
  const browser = await launchChromium(t)
  {
    const m = await h.mint({ target: { kind: 'vnc', host: '192.0.2.12', port: 5903, password: PASSWORD }, protocol: 'guacamole', serverName: 'guac-1' })
    const from = guacd.received.length
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', e => errors.push(e.message))
    page.on('response', r => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`) })
    await page.goto(m.grant.url)
    await waitFor(() => guacd.find('connect', from), 10_000, 'guacamole-lite\'s connect')
    assert.deepEqual(guacd.find('connect', from)?.args, ['VERSION_1_1_0', '192.0.2.12', '5903', PASSWORD])
    await page.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
    assert.equal(await page.textContent('#name'), 'guac-1')
    await page.click('#cad')
    await waitFor(() => guacd.received.slice(from).filter(i => i.op === 'key').length >= 6, 5000, 'Ctrl-Alt-Del at guacd')
    const keys = guacd.received.slice(from).filter(i => i.op === 'key').map(i => i.args.join(':'))
    assert.deepEqual(keys.slice(0, 3), ['65507:1', '65513:1', '65535:1'])
    assert.deepEqual(errors, [])
    await page.close()
  }
})

test('on a guacamole console, paste as keys and the key menu send guacd keysyms with the layout\'s modifiers; typing into the paste box sends nothing', async (t) => {
  const browser = await launchChromium(t)
  const m = await h.mint({ target: { kind: 'vnc', host: '192.0.2.13', port: 5904 }, protocol: 'guacamole' })
  const from = guacd.received.length
  const page = await browser.newPage()
  const errors: string[] = []
  page.on('pageerror', e => errors.push(e.message))
  await page.goto(m.grant.url)
  await page.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  const keys = (): string[] => guacd.received.slice(from).filter(i => i.op === 'key').map(i => i.args.join(':'))
  await page.click('#paste-open')
  // Typed into the page's own box: for the page, not the server.
  await page.keyboard.type('Az@')
  assert.equal(await page.inputValue('#paste-text'), 'Az@')
  await page.selectOption('#paste-layout', 'de')
  await page.selectOption('#paste-pace', '20')
  await page.click('#paste-go')
  await page.waitForSelector('body[data-paste="done"]', { timeout: 10_000 })
  // German guest, keysyms only: Shift for A, nothing for z, AltGr (ISO_Level3_Shift) for @.
  const paste = ['65505:1', '65:1', '65:0', '65505:0', '122:1', '122:0', '65027:1', '64:1', '64:0', '65027:0']
  await waitFor(() => keys().length >= paste.length, 5000, 'the pasted keys at guacd')
  assert.deepEqual(keys(), paste)
  await page.click('#keys summary')
  await page.click('#keymenu [data-combo="ctrl-alt-f1"]')
  const f1 = ['65507:1', '65513:1', '65470:1', '65470:0', '65513:0', '65507:0']
  await waitFor(() => keys().length >= paste.length + f1.length, 5000, 'Ctrl-Alt-F1 at guacd')
  assert.deepEqual(keys().slice(paste.length), f1)
  // Closing the box gives the keyboard back to the server's screen.
  await page.click('#paste-close')
  await page.keyboard.press('x')
  await waitFor(() => keys().length >= paste.length + f1.length + 2, 5000, 'a typed key at guacd')
  assert.deepEqual(keys().slice(paste.length + f1.length), ['120:1', '120:0'])
  assert.deepEqual(errors, [])
  await page.close()
})

test('a guacamole page whose socket drops (a gateway restart) says it is reconnecting and comes back by itself, to guacd again', async (t) => {
  const browser = await launchChromium(t)
  const m = await h.mint({ target: { kind: 'vnc', host: '192.0.2.14', port: 5905, password: PASSWORD }, protocol: 'guacamole', serverName: 'guac-again' })
  const page = await browser.newPage()
  const errors: string[] = []
  page.on('pageerror', e => errors.push(e.message))
  await page.goto(m.grant.url)
  await page.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  const from = guacd.received.length
  await h.stack.stop('console-gateway')
  await page.waitForSelector('body[data-reconnecting="true"]', { timeout: 10_000 })
  assert.match(await page.textContent('#message') ?? '', /Reconnecting/)
  assert.equal(await page.evaluate('document.body.dataset.closeReason'), undefined, 'the page did not give up')
  await h.stack.start('console-gateway')
  await page.waitForSelector('body[data-reconnects="1"][data-connected="true"]', { timeout: 30_000 })
  assert.equal(await page.isHidden('#message'), true, 'the notice goes once the console is back')
  // The new gateway took the same session to guacd's door with its target, and the page's keys reach it.
  const connect = await waitFor(() => guacd.find('connect', from), 10_000, 'guacamole-lite\'s connect after the reconnect')
  assert.deepEqual(connect.args, ['VERSION_1_1_0', '192.0.2.14', '5905', PASSWORD])
  assert.deepEqual(await h.sessions.connected([m.sessionId]), [true])
  await page.click('#cad')
  await waitFor(() => guacd.received.slice(from).filter(i => i.op === 'key').length >= 6, 10_000, 'Ctrl-Alt-Del at guacd after the reconnect')
  assert.equal(await page.locator('#screen > div').count(), 1, 'one display: the new one took the old one\'s place')
  assert.deepEqual(errors, [])
  await page.close()
})

test('the gateway\'s logs hold no token and no password on the guacamole path', async () => {
  const logs = h.stack.logs()
  assert.ok(logs.includes('console viewer connected'))
  for (const tok of h.tokens) assert.ok(!logs.includes(tok))
  assert.ok(!logs.includes(PASSWORD))
})
