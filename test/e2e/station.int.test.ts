// The kiosk station page in Chromium (1280×800) through the whole system: a pool of real linked clones on a
// qcow2 golden image (libvirt, qemu-img), the API's station routes and the pool's hand-out, the console job
// through the receiver, agents and gateway, and the gateway's console page in the station's frame. From the
// pictures to a live VM (its console canvas drawing) and back after Finish, with the VM and its overlay gone
// (asked of virsh and the file system); revoking a station mid-session; an empty pool; a wrong link.
// Screenshots go to test/dist/test-output/ (their paths are printed as diagnostics).
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BrowserContext, Frame, Page } from 'playwright-core'
import { poolDomains, poolOverlays, poolTemplate, removePoolLeftovers, sharedDir, startStack, testPoolName, virsh, waitFor, within, type PoolTemplate, type Stack } from '@porthole/testkit'
import { FIRST_LIT_FRAME, launchChromium, pageProblems } from '@porthole/testkit/chromium'

const OUT = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-output')
const file = { after: (fn: () => Promise<void>) => { after(fn) } }


/** Two attract pictures (SVG, one colour each) from a server of the test's own: a foreign origin, as a CDN would be. */
async function pictureServer (): Promise<{ server: Server, urls: string[] }> {
  const svg = (fill: string): string => `<svg xmlns="http://www.w3.org/2000/svg" width="1280" height="800"><rect width="1280" height="800" fill="${fill}"/><text x="640" y="400" font-size="80" text-anchor="middle" fill="#fff">Welcome</text></svg>`
  const server = createServer((req, res) => {
    const fill = req.url === '/a.svg' ? '#1f6feb' : req.url === '/b.svg' ? '#2da44e' : undefined
    if (fill === undefined) { res.writeHead(404).end(); return }
    res.writeHead(200, { 'content-type': 'image/svg+xml' }).end(svg(fill))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  return { server, urls: [`http://127.0.0.1:${port}/a.svg`, `http://127.0.0.1:${port}/b.svg`] }
}

await mkdir(OUT, { recursive: true })
const golden: PoolTemplate = await poolTemplate(file)
const overlays = await sharedDir(file, 'overlays')
const pictures = await pictureServer()
after(async () => { await new Promise<void>(resolve => pictures.server.close(() => resolve())) })
const stack: Stack = await startStack(file, { services: ['api', 'receiver', 'agents'], envFor: { agents: { AGENT_TYPES: 'kvm', POOL_OVERLAY_DIR: overlays, POOL_DISCONNECT_GRACE_SECONDS: '2' } } })
// The gateway lets the API's station page frame its console page.
await stack.start('console-gateway', { CONSOLE_FRAME_ANCESTORS: stack.apiUrl })
const tenant = await stack.api('POST', '/v1/tenants', { name: 'branch-12' })
assert.equal(tenant.status, 201, JSON.stringify(tenant.body))
const tenantId: string = tenant.body.id
const browser: BrowserContext = await launchChromium(file, { width: 1280, height: 800 })

/** A pool of `size` on the golden template, full before this returns; deleted, and its clones checked gone, at the end. */
async function pool (t: { after: (fn: () => Promise<void>) => void }, size: number, idleTimeoutSeconds = 600): Promise<string> {
  const name = testPoolName()
  removePoolLeftovers(t, name)
  const r = await stack.api('POST', '/v1/pools', { name, tenantId, template: golden.dom.name, size, idleTimeoutSeconds, maxSessionSeconds: 3600, attract: pictures.urls })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  t.after(async () => {
    await stack.api('DELETE', `/v1/pools/${name}`)
    await waitFor(async () => (await poolDomains(name)).length === 0, 120_000, `pool ${name}'s clones to be removed`, 200)
  })
  await ready(name, size)
  return name
}

async function ready (name: string, n: number): Promise<void> {
  await waitFor(async () => (await stack.api('GET', `/v1/pools/${name}`)).body.ready >= n, 120_000, `pool ${name} to have ${n} ready`, 100)
}

async function station (poolName: string, name = 'desk 1'): Promise<{ id: string, url: string }> {
  const r = await stack.api('POST', `/v1/pools/${poolName}/stations`, { name })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  assert.match(r.body.url, new RegExp(`^${stack.apiUrl}/station/${r.body.id as string}#[A-Za-z0-9_-]{43}$`))
  return r.body
}

/** A page watched for script errors, CSP violations and server errors (a refused link's 401 is expected). */
async function stationPage (): Promise<{ page: Page, problems: string[] }> {
  const page = await browser.newPage()
  const problems = await pageProblems(page, { failed: s => s >= 500, ignore: text => text.startsWith('Failed to load resource') })
  return { page, problems }
}

async function shot (t: { diagnostic: (s: string) => void }, page: Page, name: string): Promise<void> {
  const path = join(OUT, `station-${name}.png`)
  await page.screenshot({ path })
  t.diagnostic(`screenshot: ${path}`)
}

const state = async (page: Page, s: string): Promise<void> => { await page.waitForSelector(`body[data-state="${s}"]`, { timeout: 120_000 }) }

/** Waits until a picture of the pool is shown and loaded. */
async function picturesShown (page: Page): Promise<void> {
  // Loaded, and faded in all the way (the screenshot after it shows the picture, not the fade).
  await page.waitForFunction(() => {
    const w = globalThis as unknown as { document: { querySelectorAll: (s: string) => Iterable<{ complete: boolean, naturalWidth: number }> }, getComputedStyle: (e: unknown) => { opacity: string } }
    return [...w.document.querySelectorAll('#pictures img.shown')].some(i => i.complete && i.naturalWidth > 0 && w.getComputedStyle(i).opacity === '1')
  }, undefined, { timeout: 60_000 })
}

/** The console page in the station's frame. */
async function consoleFrame (page: Page): Promise<Frame> {
  return await waitFor(() => page.frames().find(f => /\/s\/[0-9a-f-]{36}\?kiosk=1$/.test(f.url())), 60_000, 'the console frame')
}

test('from the pictures to a live VM and back after Finish; the VM and its overlay are destroyed and the slot refilled', async (t) => {
  const name = await pool(t, 1)
  const [clone] = await poolDomains(name)
  assert.ok(clone !== undefined)
  const s = await station(name)
  const { page, problems } = await stationPage()
  await page.goto(s.url)
  await state(page, 'idle')
  await picturesShown(page)
  assert.equal(new URL(page.url()).hash, '', 'the secret left the address bar')
  assert.match(await page.textContent('#hint') ?? '', /Touch the screen/)
  await shot(t, page, '1-pictures')

  await page.mouse.click(640, 400)
  await state(page, 'live')
  const frame = await consoleFrame(page)
  const lit = await within(frame.evaluate(FIRST_LIT_FRAME) as Promise<{ at: number }>, 60_000, 'a lit frame on the console canvas')
  assert.ok(lit.at > 0, 'the console canvas draws the VM\'s screen')
  // The gateway lets this origin, and only it, frame its console page.
  const framed = await fetch(frame.url())
  assert.match(framed.headers.get('content-security-policy') ?? '', new RegExp(`frame-ancestors ${stack.apiUrl}(;|$)`))
  assert.equal(framed.headers.get('x-frame-options'), null)
  // Finish is the station's: the console page in its frame shows no Disconnect of its own.
  assert.equal(await frame.locator('#disconnect').count(), 1, "the console page's toolbar is in the frame")
  assert.equal(await frame.locator('#disconnect').isVisible(), false, 'a Disconnect button in the station frame')
  const box = await page.locator('#console').boundingBox()
  assert.deepEqual([box?.width, box?.height], [1280, 800], 'the console fills the screen')
  assert.equal(await virsh('domstate', clone), 'running')
  await shot(t, page, '2-live')

  // The session the browser shows is the one in the frame's console URL (/s/<session id>).
  const shown = /\/s\/([^/?#]+)/.exec(new URL(frame.url()).pathname)?.[1]
  assert.ok(shown !== undefined, `a console page in the frame: ${frame.url()}`)
  const listed = await stack.api('GET', `/v1/pools/${name}/stations`)
  assert.equal(listed.body[0].sessionId, shown, 'the station lists the session it shows')

  await page.click('#finish')
  await state(page, 'ended')
  assert.match(await page.textContent('#message') ?? '', /Session ended/)
  await shot(t, page, '3-ended')
  await state(page, 'idle')
  await picturesShown(page)
  await shot(t, page, '4-pictures-again')

  // The handed-out VM is destroyed and undefined and its overlay deleted; a fresh clone takes the slot.
  await waitFor(async () => !(await poolDomains(name)).includes(clone), 120_000, `clone ${clone} to be destroyed`, 200)
  await waitFor(async () => !(await poolOverlays(overlays, name)).some(f => f.startsWith(clone)), 60_000, `${clone}'s overlay to be deleted`, 200)
  await ready(name, 1)
  assert.notEqual((await poolDomains(name))[0], clone, 'never handed out again')
  assert.deepEqual(problems, [], 'no script error, CSP violation or server error on the page')
  const secret = new URL(s.url).hash.slice(1)
  assert.ok(!stack.logs().includes(secret), 'the station secret is in no log line')
  await page.close()
})

test('revoking a station ends the session it shows and the page says it is no longer set up', async (t) => {
  const name = await pool(t, 1)
  const s = await station(name, 'desk 2')
  const { page } = await stationPage()
  await page.goto(s.url)
  await state(page, 'idle')
  const [clone] = await poolDomains(name) // the pool's one clone: the one handed out
  assert.ok(clone !== undefined)
  await page.keyboard.press('Enter')
  await state(page, 'live')
  assert.equal((await stack.api('DELETE', `/v1/pools/${name}/stations/${s.id}`)).status, 204)
  await state(page, 'refused')
  assert.match(await page.textContent('#message') ?? '', /station link is not valid/)
  assert.equal(await page.locator('#desk').isHidden(), true, 'the desktop is gone from the screen')
  await shot(t, page, '5-revoked')
  await waitFor(async () => !(await poolDomains(name)).includes(clone), 120_000, `clone ${clone} to be destroyed`, 200)
  assert.deepEqual((await stack.api('GET', `/v1/pools/${name}/stations`)).body, [])
  const info = await fetch(`${stack.apiUrl}/station/${s.id}/info`, { headers: { authorization: `Station ${new URL(s.url).hash.slice(1)}` } })
  assert.equal(info.status, 401)
  await page.close()
})

test('an empty pool: the page says all desktops are busy and gets one when a clone is free', async (t) => {
  const name = await pool(t, 1)
  const a = await station(name, 'desk 3')
  const b = await station(name, 'desk 4')
  const first = await stationPage()
  await first.page.goto(a.url)
  await state(first.page, 'idle')
  await first.page.mouse.click(100, 100)
  await state(first.page, 'live')
  const second = await stationPage()
  await second.page.goto(b.url)
  await state(second.page, 'idle')
  await second.page.mouse.click(100, 100)
  await second.page.locator('#message', { hasText: 'All desktops are busy, trying again…' }).waitFor({ timeout: 60_000 })
  await shot(t, second.page, '6-busy')
  await first.page.click('#finish')
  await state(second.page, 'live')
  await within((await consoleFrame(second.page)).evaluate(FIRST_LIT_FRAME), 60_000, 'a lit frame on the second console')
  await second.page.click('#finish')
  await state(second.page, 'idle')
  await first.page.close()
  await second.page.close()
})

test('a session nobody touches ends at the pool\'s idle timeout and the page returns to the pictures by itself', async (t) => {
  const name = await pool(t, 1, 10)
  const [clone] = await poolDomains(name)
  assert.ok(clone !== undefined)
  const s = await station(name, 'desk 6')
  const { page, problems } = await stationPage()
  await page.goto(s.url)
  await state(page, 'idle')
  await page.mouse.click(640, 400)
  await state(page, 'live')
  // No input reaches the VM from here on: the gateway ends the session after 10 s, the pool destroys the clone.
  await state(page, 'ended')
  assert.match(await page.textContent('#message') ?? '', /idle for too long/)
  await shot(t, page, '8-idle-ended')
  await state(page, 'idle')
  await picturesShown(page)
  await waitFor(async () => !(await poolDomains(name)).includes(clone), 120_000, `clone ${clone} to be destroyed`, 200)
  assert.deepEqual(problems, [])
  await page.close()
})

test('a wrong or incomplete station link says so plainly', async (t) => {
  const name = await pool(t, 1)
  const s = await station(name, 'desk 5')
  for (const [what, url] of [['wrong secret', `${stack.apiUrl}/station/${s.id}#${'A'.repeat(43)}`], ['no secret', `${stack.apiUrl}/station/${s.id}`]] as const) {
    const { page } = await stationPage()
    await page.goto(url)
    await state(page, 'refused')
    assert.match(await page.textContent('#message') ?? '', what === 'no secret' ? /needs its station link/ : /station link is not valid/, what)
    if (what === 'wrong secret') await shot(t, page, '7-wrong-link')
    await page.close()
  }
})
