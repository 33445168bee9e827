/**
 * Renewal without a reconnect, in Chromium against a real VM: a session renewed (as the API does, through
 * ConsoleSessionStore.renew) keeps its live socket past its first expiry and the page's countdown follows; a
 * renewable session's page offers "Keep open" in its last five minutes and renews itself, audited; a session
 * nobody renews still closes at expiry; the page cannot renew a session that is not renewable.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import type { BrowserContext, Page } from 'playwright-core'
import { waitFor } from '@porthole/testkit'
import type { ConsoleTarget } from '@porthole/contracts'
import { AuditLog } from '@porthole/shared/store'
import { connectedPage as connectedPageIn, fileScope, vncBrowserSuite, type Harness } from './support.js'

const suite = fileScope(after)
let h: Harness
let target: ConsoleTarget
let browser: BrowserContext

before(async () => {
  ;({ h, target, browser } = await vncBrowserSuite(suite, 'renew1'))
})

/** A page on a console URL, connected. */
const connectedPage = async (url: string): Promise<Page> => await connectedPageIn(suite, browser, url)

/** Seconds the page's countdown shows. */
async function shownSeconds (page: Page): Promise<number> {
  const text = await page.textContent('#left') ?? ''
  const m = /^(?:(\d+):)?(\d+):(\d\d) left$/.exec(text)
  assert.ok(m !== null, `countdown text: ${text}`)
  return Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3])
}

test('a renewed session keeps its socket open past its first expiry, and the page\'s countdown follows at once', async () => {
  const m = await h.mint({ target, ttlSeconds: 12 })
  const page = await connectedPage(m.grant.url)
  const first = Date.parse(m.grant.expiresAt)
  assert.ok(await shownSeconds(page) <= 12)
  const r = await h.sessions.renew(m.sessionId, 600)
  assert.ok(r.ok, JSON.stringify(r))
  assert.ok(Date.parse(r.session.expiresAt) > first + 500_000)
  // The page learns it from its waiting look-up, long before its 25 s poll would come round.
  await page.waitForSelector(`body[data-expires-at="${r.session.expiresAt}"]`, { timeout: 5000 })
  await waitFor(async () => await shownSeconds(page) > 500, 5000, 'the countdown to show the new expiry')
  // The first expiry comes: the gateway reads the session again and keeps the viewer.
  await waitFor(() => h.stack.logLines.some(l => l.includes(m.sessionId) && l.includes('viewer kept until its new expiry')), 20_000, 'the gateway to keep the viewer at its first expiry')
  assert.ok(Date.now() > first)
  assert.equal(await page.evaluate('document.body.dataset.closeReason'), undefined, 'the page is still connected')
  assert.equal(await page.evaluate('document.body.dataset.connected'), 'true')
  // The session itself still opens, now past its first expiry.
  const again = await page.evaluate(`fetch(location.pathname + '/info', { headers: { authorization: 'Bearer ${m.token}' } }).then(r => r.status)`)
  assert.equal(again, 200)
})

test('a session nobody renews closes at expiry, and its page says so; a page cannot renew a session that is not renewable', async () => {
  const m = await h.mint({ target, ttlSeconds: 10 })
  const page = await connectedPage(m.grant.url)
  assert.equal(await page.isHidden('#renew'), true, 'no "Keep open" for a session that is not renewable')
  await page.waitForSelector('#closing:not([hidden])', { timeout: 5000 })
  assert.equal(await page.textContent('#closing'), 'Closing soon', 'the page warns all the same')
  const refused = await page.evaluate(`fetch(location.pathname + '/renew', { method: 'POST', headers: { authorization: 'Bearer ${m.token}' } }).then(async r => [r.status, (await r.json()).reason])`)
  assert.deepEqual(refused, [409, 'not-renewable'])
  await page.waitForSelector('body[data-close-reason="expired"]', { timeout: 20_000 })
  assert.match(await page.textContent('#message') ?? '', /expired/)
  assert.ok(Date.now() >= Date.parse(m.grant.expiresAt) - 1000, 'closed at its expiry, not before')
})

test('a renewable session\'s page offers "Keep open" in its last five minutes and renews itself, audited, up to its total', async () => {
  const m = await h.mint({ target, ttlSeconds: 60, renewable: true, maxTotalSeconds: 90 })
  const page = await connectedPage(m.grant.url)
  await page.waitForSelector('#renew:not([hidden])', { timeout: 5000 })
  assert.equal(await page.textContent('#closing'), 'Closing soon:', 'the page warns')
  const before = await page.evaluate('document.body.dataset.expiresAt') as string
  await page.click('#renew')
  await page.waitForSelector(`body:not([data-expires-at="${before}"])`, { timeout: 5000 })
  const after = await page.evaluate('document.body.dataset.expiresAt') as string
  const s = await h.sessions.get(m.sessionId)
  assert.equal(s?.expiresAt, after, 'the page shows the expiry Redis has')
  // At most its total: created + 90 s, however long a renewal would give.
  assert.ok(Date.parse(after) <= Date.parse(s?.createdAt ?? '') + 90_000)
  assert.ok(Date.parse(after) > Date.parse(before))
  const audit = new AuditLog(h.redis, h.stack.ns)
  const entries = await audit.list({ tenantId: s?.tenantId })
  const renewal = entries.find(e => e.action === 'console-session.renew' && e.sessionId === m.sessionId)
  assert.ok(renewal !== undefined, 'the renewal is audited')
  assert.equal(renewal.actor, 'console-page')
  assert.match(renewal.result, /^ok: until /)
  // Renewed to its total (as through the API: as long as it may), the page cannot add more: its renewal is
  // refused as at its limit, and the button goes.
  const full = await h.sessions.renew(m.sessionId, 7200)
  assert.ok(full.ok)
  assert.equal(Date.parse(full.session.expiresAt), Date.parse(s?.createdAt ?? '') + 90_000)
  const again = await page.evaluate(`fetch(location.pathname + '/renew', { method: 'POST', headers: { authorization: 'Bearer ${m.token}' } }).then(async r => [r.status, (await r.json()).reason])`)
  assert.deepEqual(again, [409, 'at-limit'])
  await page.waitForSelector('#renew', { state: 'hidden', timeout: 5000 })
})
