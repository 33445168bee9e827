// Runs alone: it presses Ctrl-Alt-Del in a real guest, which reacts only while its firmware listens for keys;
// a second test file loading the other core makes that moment hard to meet.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { BrowserContext, Page } from 'playwright-core'
import { waitFor, type TinyDomain } from '@porthole/testkit'
import { pageProblems } from '@porthole/testkit/chromium'
import type { ConsoleTarget } from '@porthole/contracts'
import { canvasStats, fileScope, vmScreenshot, solBridge, vncBrowserSuite, type Harness } from './support.js'

const PASSWORD = 's3cret'
const suite = fileScope(after)
let h: Harness
let vm: TinyDomain
let target: ConsoleTarget
let browser: BrowserContext

before(async () => { ({ h, vm, target, browser } = await vncBrowserSuite(suite, PASSWORD)) })

test('the console page shows the VM\'s screen, and Ctrl-Alt-Del reaches the VM', async (t) => {
  const m = await h.mint({ target, serverName: 'web-1.example' })
  const page = await browser.newPage()
  const errors: string[] = []
  page.on('pageerror', e => errors.push(e.message))
  page.on('console', msg => { if (msg.type() === 'error') errors.push(msg.text()) })
  page.on('response', r => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`) })
  const requests: string[] = []
  page.on('request', r => requests.push(r.url()))
  const t0 = Date.now()
  await page.goto(m.grant.url)
  await page.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  t.diagnostic(`page to connected console: ${Date.now() - t0} ms`)
  assert.equal(new URL(page.url()).hash, '', 'the token is removed from the address bar')
  assert.equal(await page.textContent('#name'), 'web-1.example')
  assert.match(await page.textContent('#left') ?? '', /^\d+:\d\d left$/)
  for (const u of requests) assert.ok(!u.includes(m.token), `a request carried the token in its URL: ${u}`)

  // The SeaBIOS text screen, drawn by noVNC on its canvas.
  const shown = await waitFor(async () => { const s = await canvasStats(page); return s.lit > 200 ? s : undefined }, 10_000, 'a non-blank screen')
  assert.ok(shown.width >= 640 && shown.height >= 400, `screen ${shown.width}x${shown.height}`)

  // Wait for a still screen (the BIOS has given up booting), then press Ctrl-Alt-Del: the BIOS restarts.
  // Samples 700 ms apart (waitFor's interval); the first call only takes the first sample.
  let sample: Awaited<ReturnType<typeof canvasStats>> | undefined
  const still = await waitFor(async () => {
    const now = await canvasStats(page)
    const same = sample !== undefined && now.sum === sample.sum
    sample = now
    return same ? now : undefined
  }, 20_000, 'a still screen', 700)
  const shotBefore = await screenshotSum(vm)
  // Up to three presses: on a loaded machine a press can land while the firmware is not yet listening.
  let changed: Awaited<ReturnType<typeof canvasStats>> | undefined
  for (let press = 0; press < 3 && changed === undefined; press++) {
    await page.click('#cad')
    changed = await waitFor(async () => { const s = await canvasStats(page); return s.sum !== still.sum ? s : undefined }, 6000, 'the screen to change after Ctrl-Alt-Del').catch(() => undefined)
  }
  assert.ok(changed !== undefined, 'three Ctrl-Alt-Del presses left the screen unchanged')
  assert.notEqual(changed.sum, still.sum)
  // Asked of libvirt itself: the VM's own screen changed too.
  await waitFor(async () => (await screenshotSum(vm)) !== shotBefore, 10_000, 'libvirt\'s screenshot to change')
  assert.deepEqual(errors, [], 'no failed requests, script or CSP errors on the page')

  // Disconnect button.
  await page.click('#disconnect')
  await page.waitForSelector('body[data-close-reason="user"]')
  await page.close()
})

test('the page says why when the session is revoked while open', async () => {
  const m = await h.mint({ target })
  const page = await browser.newPage()
  await page.goto(m.grant.url)
  await page.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  const s = await h.sessions.get(m.sessionId)
  assert.ok(s !== undefined)
  await h.sessions.revoke(s)
  await page.waitForSelector('body[data-close-reason="revoked"]', { timeout: 2000 })
  assert.match(await page.textContent('#message') ?? '', /ended by an administrator/)
  await page.close()
})

test('the page says why when another viewer takes over, and when a single-use link is reused', async () => {
  const m = await h.mint({ target, singleUse: false })
  const first = await browser.newPage()
  await first.goto(m.grant.url)
  await first.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  const second = await browser.newPage()
  await second.goto(m.grant.url)
  await second.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  await first.waitForSelector('body[data-close-reason="replaced"]', { timeout: 2000 })
  assert.match(await first.textContent('#message') ?? '', /another window/)
  await Promise.all([first.close(), second.close()])

  const once = await h.mint({ target, singleUse: true })
  const a = await browser.newPage()
  await a.goto(once.grant.url)
  await a.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  const b = await browser.newPage()
  await b.goto(once.grant.url)
  await b.waitForSelector('body[data-close-reason="used"]', { timeout: 5000 })
  await Promise.all([a.close(), b.close()])
})

/** The serial terminal's text, as xterm.js renders it into the DOM. */
const terminalText = async (page: Page): Promise<string> => await page.evaluate('document.querySelector("#screen .xterm-rows")?.textContent ?? ""')

test('a serial console shows in a terminal, colours and all, under the strict CSP; typing reaches the line', async (t) => {
  // 24-bit colour is the one thing xterm.js styles with a style attribute; 256-colour uses its classes.
  const bridge = await solBridge(t, h.stack.solBridgeSecret, 'Welcome to \x1b[38;2;255;0;0mred-host\x1b[0m\r\nlogin: ')
  const m = await h.mint({ protocol: 'serial', target: bridge.target, serverName: 'metal-7.example' })
  const page = await browser.newPage()
  const errors = await pageProblems(page)
  await page.goto(m.grant.url)
  await page.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  assert.equal(await page.textContent('#name'), 'metal-7.example')
  assert.equal(await page.isVisible('#cad'), false, 'no Ctrl-Alt-Del on a serial line')
  await waitFor(async () => (await terminalText(page)).includes('login:'), 10_000, 'the greeting in the terminal')
  assert.match(await terminalText(page), /Welcome to red-host/)
  const red = await page.evaluate(`(() => {
    const span = [...document.querySelectorAll('#screen .xterm-rows span')].find(s => s.textContent.includes('red-host'))
    return span === undefined ? '' : getComputedStyle(span).color
  })()`)
  assert.equal(red, 'rgb(255, 0, 0)')
  await page.keyboard.type('root')
  await page.keyboard.press('Enter')
  await waitFor(async () => (await terminalText(page)).includes('ROOT'), 5000, 'the echo in the terminal')
  assert.equal(bridge.received(), 'root\r')
  // The terminal fills the screen area (fitted), in the page's font rather than xterm.css's default.
  const size = await page.evaluate(`(() => { const r = document.querySelector('#screen .xterm-screen').getBoundingClientRect(); const s = document.querySelector('#screen').getBoundingClientRect(); return [r.width / s.width, r.height / s.height] })()`) as [number, number]
  assert.ok(size[0] > 0.9 && size[1] > 0.9, `the terminal covers ${JSON.stringify(size)} of the screen`)
  assert.deepEqual(errors, [], 'no failed requests, script or CSP errors on the page')

  await page.click('#disconnect')
  await page.waitForSelector('body[data-close-reason="user"]')
  assert.match(await page.textContent('#message') ?? '', /You disconnected/)
  await page.close()
})

test('a serial page says why it ended: revoked, and a single-use link opened again', async (t) => {
  const bridge = await solBridge(t, h.stack.solBridgeSecret, 'login: ')
  const m = await h.mint({ protocol: 'serial', target: bridge.target, singleUse: true })
  const a = await browser.newPage()
  const errors = await pageProblems(a)
  await a.goto(m.grant.url)
  await a.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  await waitFor(async () => (await terminalText(a)).includes('login:'), 10_000, 'the greeting in the terminal')
  const b = await browser.newPage()
  await b.goto(m.grant.url)
  await b.waitForSelector('body[data-close-reason="used"]', { timeout: 5000 })
  assert.match(await b.textContent('#message') ?? '', /could be used once/)
  const s = await h.sessions.get(m.sessionId)
  assert.ok(s !== undefined)
  await h.sessions.revoke(s)
  await a.waitForSelector('body[data-close-reason="revoked"]', { timeout: 2000 })
  assert.match(await a.textContent('#message') ?? '', /ended by an administrator/)
  // The page's look-up and its socket start together: when the socket claims the single-use link first, the
  // look-up is answered 410 used (naming the protocol, so the page still starts its terminal, as it did), and
  // the look-up waiting for the session's next change is answered 410 by the revocation.
  assert.deepEqual(errors.filter(e => !/^410 .*\/info(\?wait=\d+&version=[\w-]*)?$|status of 410/.test(e)), [])
  await Promise.all([a.close(), b.close()])
})

test('the browser\'s traffic and the gateway\'s logs hold no token and no VNC password', async () => {
  const logs = h.stack.logs()
  assert.ok(logs.includes('console viewer connected'))
  for (const tok of h.tokens) assert.ok(!logs.includes(tok))
  assert.ok(!logs.includes(PASSWORD))
})

async function screenshotSum (d: TinyDomain): Promise<string> {
  return createHash('sha256').update(await vmScreenshot(d)).digest('hex')
}
