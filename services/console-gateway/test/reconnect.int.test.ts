/**
 * Reconnects, in Chromium against a real VM: when the console gateway restarts under a live page, the page
 * says it is reconnecting and comes back by itself, on the same session; a single-use session lets the tab
 * that used it back in (its resume secret), but not another tab holding the same link; a revoked session is
 * not reconnected.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import type { BrowserContext, Page } from 'playwright-core'
import type { ConsoleTarget } from '@porthole/contracts'
import { freePort, waitFor } from '@porthole/testkit'
import { connectedPage as connectedPageIn, fileScope, solBridge, vncBrowserSuite, type Harness } from './support.js'

const suite = fileScope(after)
let h: Harness
let target: ConsoleTarget
let browser: BrowserContext

before(async () => {
  ;({ h, target, browser } = await vncBrowserSuite(suite, 'recon1'))
})

/** A page on a console URL, connected. */
const connectedPage = async (url: string): Promise<Page> => await connectedPageIn(suite, browser, url)

/** Restarts the gateway process; resolves once the new one is ready on the same port. */
async function restartGateway (pages: Page[]): Promise<void> {
  await h.stack.stop('console-gateway')
  // Each page noticed and says so before the gateway is back.
  for (const p of pages) await p.waitForSelector('body[data-reconnecting="true"]', { timeout: 10_000 })
  for (const p of pages) assert.match(await p.textContent('#message') ?? '', /Reconnecting/)
  await h.stack.start('console-gateway')
}

test('a gateway restart under a live page: the page says it is reconnecting and comes back by itself', async () => {
  const m = await h.mint({ target, serverName: 'restart-1' })
  const page = await connectedPage(m.grant.url)
  await restartGateway([page])
  await page.waitForSelector('body[data-reconnects="1"][data-connected="true"]', { timeout: 30_000 })
  assert.equal(await page.isHidden('#message'), true, 'the notice goes once the console is back')
  assert.equal(await page.evaluate('document.body.dataset.closeReason'), undefined)
  assert.deepEqual(await h.sessions.connected([m.sessionId]), [true], 'the new gateway holds the viewer')
  // The screen is drawn again on the new connection.
  await page.waitForSelector('#screen canvas', { timeout: 10_000 })
})

test('a single-use session lets the tab that used it back in after a restart, and nobody else holding the link', async () => {
  const m = await h.mint({ target, singleUse: true })
  const page = await connectedPage(m.grant.url)
  await restartGateway([page])
  await page.waitForSelector('body[data-reconnects="1"][data-connected="true"]', { timeout: 30_000 })
  assert.ok(h.stack.logLines.some(l => l.includes(m.sessionId) && l.includes('resumed by the viewer that used it')))
  // Another tab with the very same link has no resume secret: the link is used.
  const other = await browser.newPage()
  suite.after(async () => { await other.close() })
  await other.goto(m.grant.url)
  await other.waitForSelector('body[data-close-reason="used"]', { timeout: 10_000 })
  assert.equal(await page.evaluate('document.body.dataset.connected'), 'true', 'the first tab keeps its console')
  assert.equal(await page.evaluate('document.body.dataset.closeReason'), undefined)
})

test('a revoked session is not reconnected', async () => {
  const m = await h.mint({ target })
  const page = await connectedPage(m.grant.url)
  const s = await h.sessions.get(m.sessionId)
  assert.ok(s !== undefined)
  await h.sessions.revoke(s)
  await page.waitForSelector('body[data-close-reason="revoked"]', { timeout: 5000 })
  assert.equal(await page.evaluate('document.body.dataset.reconnecting'), undefined, 'no reconnect was tried')
})

test('a page whose console never connected (nothing answers at the target) says why at once, without retrying', async () => {
  const port = await freePort() // nothing listens there
  const m = await h.mint({ target: { kind: 'vnc', host: '127.0.0.1', port } })
  const page = await browser.newPage()
  suite.after(async () => { await page.close() })
  await page.goto(m.grant.url)
  await page.waitForSelector('body[data-close-reason="unreachable"]', { timeout: 15_000 })
  assert.match(await page.textContent('#message') ?? '', /could not be reached/)
  assert.equal(await page.evaluate('document.body.dataset.reconnecting'), undefined)
})

test('a serial console\'s page comes back after a gateway restart too, on the bridge\'s next ticket, in the same terminal', async () => {
  const bridge = await solBridge(suite, h.stack.solBridgeSecret, 'login: ')
  const m = await h.mint({ protocol: 'serial', target: bridge.target })
  const page = await connectedPage(m.grant.url)
  const terminal = async (): Promise<string> => await page.evaluate('document.querySelector("#screen .xterm-rows")?.textContent ?? ""') as string
  await waitFor(async () => (await terminal()).includes('login:'), 10_000, 'the greeting in the terminal')
  await restartGateway([page])
  await page.waitForSelector('body[data-reconnects="1"][data-connected="true"]', { timeout: 30_000 })
  // The new connection spent the successor ticket the session kept: the line greets again, and takes keys.
  await waitFor(async () => (await terminal()).split('login:').length > 2, 10_000, 'the second greeting in the same terminal')
  await page.click('#screen')
  await page.keyboard.type('abc')
  await waitFor(() => bridge.received().includes('abc'), 10_000, 'the typed keys on the line')
})
