/**
 * Shared views: a second URL for the same screen. At the RFB level (a recording VNC server as the target),
 * a view-only viewer's keys, pointer, clipboard, resizes and power requests never reach the target, and its
 * exclusive ClientInit is made shared, while the owner's input does; in Chromium against a real VM, the owner's
 * page shows who is watching, the watcher's page is view only, and revoking the session ends every share.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import type { BrowserContext, Page } from 'playwright-core'
import { CONSOLE_CLOSE, consoleUrl, type ConsoleShareRecord, type ConsoleTarget } from '@porthole/contracts'
import { randomToken, sha256Hex } from '@porthole/shared/crypto'
import { ConsoleShareStore } from '@porthole/shared/store'
import { waitFor } from '@porthole/testkit'
import { connectedPage as connectedPageIn, fileScope, openViewer, recorder, rfbHandshake, vncBrowserSuite, type Harness, type Viewer } from './support.js'

const suite = fileScope(after)
let h: Harness
let target: ConsoleTarget
let browser: BrowserContext
let shares: ConsoleShareStore

before(async () => {
  ;({ h, target, browser } = await vncBrowserSuite(suite, 'share1'))
  shares = new ConsoleShareStore(h.redis, h.stack.ns)
})

/** A share of the session, as the API makes it: its token (of which Redis keeps the hash) and URL. */
async function share (sessionId: string, o: { viewOnly?: boolean, label?: string, ttlSeconds?: number } = {}): Promise<{ token: string, url: string, id: string }> {
  const token = randomToken(32)
  const now = Date.now()
  const rec: ConsoleShareRecord = {
    id: randomUUID(), sessionId, tokenHash: sha256Hex(token), viewOnly: o.viewOnly ?? true, createdAt: new Date(now).toISOString(),
    createdBy: 'test', expiresAt: new Date(now + (o.ttlSeconds ?? 600) * 1000).toISOString(), ...(o.label === undefined ? {} : { label: o.label })
  }
  await shares.create(rec, now)
  h.tokens.push(token)
  return { token, url: consoleUrl(h.stack.gatewayUrl, sessionId, token), id: rec.id }
}

const u16 = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b }
const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b }
const ESC = 0xff1b
/** Everything a viewer could send to act on the server: keys, pointer, clipboard, QEMU keys, xvp reboot, a resize. */
const INPUT = Buffer.concat([
  Buffer.from([4, 1, 0, 0]), u32(ESC), Buffer.from([4, 0, 0, 0]), u32(ESC),
  Buffer.from([5, 1]), u16(10), u16(10),
  Buffer.from([6, 0, 0, 0]), u32(5), Buffer.from('hello'),
  Buffer.from([255, 0]), u16(1), u32(ESC), u32(1),
  Buffer.from([250, 0, 1, 4]),
  Buffer.from([251, 0]), u16(800), u16(600), Buffer.from([1, 0]), Buffer.alloc(16)
])
const UPDATE_REQUEST = Buffer.concat([Buffer.from([3, 0]), u16(0), u16(0), u16(10), u16(10)])

/** Sends an update request and reads the server's answer: everything this viewer sent before has reached (or not) the target. */
async function barrier (v: Viewer): Promise<void> {
  v.ws.send(UPDATE_REQUEST)
  const head = await v.read(4)
  assert.equal(head[0], 0, 'a FramebufferUpdate')
  if (head.readUInt16BE(2) > 0) await v.read(12 * head.readUInt16BE(2))
}

test('a view-only viewer\'s input never reaches the target (dropped by the gateway), its ClientInit is made shared; the owner\'s input does', async () => {
  const rec = await recorder(suite, { qemuKeys: false })
  const m = await h.mint({ target: rec.target })
  const owner = openViewer(h, m.sessionId, m.token)
  await rfbHandshake(owner)
  const s = await share(m.sessionId)
  const watcher = openViewer(h, m.sessionId, s.token)
  assert.equal((await rfbHandshake(watcher, { shared: false })).name, 'recorder', 'the share shows the same screen')
  // Split across frames, as a browser may send it: the gateway reassembles before it decides.
  watcher.ws.send(INPUT.subarray(0, 5))
  watcher.ws.send(INPUT.subarray(5))
  await barrier(watcher)
  assert.equal(rec.keys.length, 0, 'no key of the view-only viewer reached the target')
  assert.deepEqual(rec.resizes, [])
  assert.deepEqual(rec.types, [3], 'only its update request reached the target')
  assert.deepEqual(rec.shared, [1, 1], 'its exclusive ClientInit was made shared')
  // The owner types: the target gets it.
  owner.ws.send(INPUT.subarray(0, 16))
  await barrier(owner)
  assert.deepEqual(rec.keys.map(k => [k.down, k.keysym]), [[true, ESC], [false, ESC]])
  // An interactive share passes input too.
  const helper = await share(m.sessionId, { viewOnly: false })
  const hv = openViewer(h, m.sessionId, helper.token)
  await rfbHandshake(hv)
  hv.ws.send(INPUT.subarray(0, 8))
  await barrier(hv)
  assert.equal(rec.keys.length, 3)
  // A view-only viewer sending what the gateway cannot size is closed, not relayed.
  const odd = openViewer(h, m.sessionId, s.token)
  await rfbHandshake(odd)
  odd.ws.send(Buffer.from([99, 1, 2, 3]))
  assert.equal((await odd.closed).code, CONSOLE_CLOSE.invalid.code)
  assert.equal(owner.ws.readyState, owner.ws.OPEN, 'the owner is not replaced by any share')
  for (const v of [owner, watcher, hv]) v.ws.close()
})

test('a share ends at its own expiry; the owner stays', async () => {
  const rec = await recorder(suite, { qemuKeys: false })
  const m = await h.mint({ target: rec.target })
  const owner = openViewer(h, m.sessionId, m.token)
  await rfbHandshake(owner)
  const s = await share(m.sessionId, { ttlSeconds: 10 })
  const watcher = openViewer(h, m.sessionId, s.token)
  await rfbHandshake(watcher)
  const closed = await watcher.closed
  assert.equal(closed.code, CONSOLE_CLOSE.expired.code)
  assert.equal(owner.ws.readyState, owner.ws.OPEN)
  owner.ws.close()
})

/** A page on a console URL, connected. */
const page = async (url: string): Promise<Page> => await connectedPageIn(suite, browser, url)

test('in Chromium on a real VM: the owner sees who watches, the watcher\'s page is view only, and revoking the session ends every share', async () => {
  const m = await h.mint({ target, serverName: 'shared-1' })
  const owner = await page(m.grant.url)
  const s = await share(m.sessionId, { label: 'support: Ann' })
  const watcher = await page(s.url)
  assert.equal(await watcher.textContent('#state'), 'Watching (view only)')
  assert.equal(await watcher.isHidden('#paste-open'), true)
  assert.equal(await watcher.isHidden('#keys'), true)
  assert.equal(await watcher.textContent('#name'), 'shared-1', 'the same screen')
  await watcher.waitForSelector('#screen canvas', { timeout: 10_000 })
  // The owner's page learns of the watcher at once (its waiting look-up), by the share's label.
  await owner.waitForSelector('body[data-watchers="1"]', { timeout: 5000 })
  assert.equal(await owner.textContent('#watchers'), 'Watching: support: Ann (view only)')
  assert.equal(await watcher.isHidden('#watchers'), true, 'a watcher is not told who else watches')
  // A second watcher, then revocation: every page ends.
  const second = await page((await share(m.sessionId)).url)
  await owner.waitForSelector('body[data-watchers="2"]', { timeout: 5000 })
  assert.equal(await owner.textContent('#watchers'), 'Watching: support: Ann (view only), someone (view only)')
  // A watcher who leaves is gone from the owner's page at once.
  await second.close()
  await owner.waitForSelector('body[data-watchers="1"]', { timeout: 5000 })
  const third = await page((await share(m.sessionId, { viewOnly: false })).url)
  assert.equal(await third.textContent('#state'), 'Connected (shared)')
  await owner.waitForSelector('body[data-watchers="2"]', { timeout: 5000 })
  const session = await h.sessions.get(m.sessionId)
  assert.ok(session !== undefined)
  await h.sessions.revoke(session)
  for (const p of [owner, watcher, third]) await p.waitForSelector('body[data-close-reason="revoked"]', { timeout: 5000 })
  await waitFor(async () => (await shares.watchers(m.sessionId)).length === 0, 5000, 'the watchers to be gone')
  // The share's link no longer opens.
  const late = await browser.newPage()
  suite.after(async () => { await late.close() })
  await late.goto(s.url)
  await late.waitForSelector('body[data-close-reason="revoked"]', { timeout: 5000 })
})
