/**
 * The guacamole path end to end against a real guacd: Chromium opens the console page, guacamole-common-js
 * talks through the gateway and guacamole-lite to guacd, and guacd to a real libvirt VM's VNC display
 * (with a password). Debian packages no guacd, so these tests run only when GUACD_HOST (and optionally
 * GUACD_PORT, default 4822) names one; without it they report themselves skipped, with the reason, and
 * scripts/run-tests.mjs counts them in its skip summary at the end. The README says how to run them.
 * guacamole.int.test.ts covers the same path up to guacd's door with a listener of its own.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { Page } from 'playwright-core'
import { waitFor, type TinyDomain } from '@porthole/testkit'
import { canvasStats, decodePng, fileScope, vmScreenshot, vncBrowserSuite, type VncBrowserSuite } from './support.js'

const GUACD_HOST = process.env.GUACD_HOST
const GUACD_PORT = process.env.GUACD_PORT ?? '4822'
const skip = GUACD_HOST === undefined || GUACD_HOST === ''
  ? 'guacd: GUACD_HOST not set — this test of the Guacamole path beyond guacd’s door needs a real guacd (README: Tests that need a guacd); guacamole.int.test.ts tests the path up to its door'
  : false
const PASSWORD = 'gd-Pw7x'
const suite = fileScope(after)
let s: VncBrowserSuite

before(async () => {
  if (skip !== false) return
  s = await vncBrowserSuite(suite, PASSWORD, undefined, { envFor: { 'console-gateway': { GUACD_HOST: GUACD_HOST as string, GUACD_PORT } } })
  // The VM's BIOS has drawn something before any test looks for it.
  await waitFor(async () => (await screenshot(s.vm)).lit > 200, 10_000, 'the VM\'s first screen')
})

interface Shot { width: number, height: number, rgb: Buffer, lit: number, sum: string }

/** The VM's screen as libvirt sees it (`virsh screenshot`; this libvirt writes a PNG). */
async function screenshot (d: TinyDomain): Promise<Shot> {
  const { width, height, rgb } = decodePng(await vmScreenshot(d))
  let lit = 0
  for (let p = 0; p + 2 < rgb.length; p += 3) if ((rgb[p] as number) + (rgb[p + 1] as number) + (rgb[p + 2] as number) > 60) lit++
  return { width, height, rgb, lit, sum: createHash('sha256').update(rgb).digest('hex') }
}


/**
 * Of the pixels lit in either picture (the BIOS screen is a few lines of text on black, so counting the
 * black would hide any difference), the share that match within `tol` per channel (JPEG, if guacd chose
 * it, is lossy). A blinking text cursor alone moves this by about 0.2%.
 */
function litMatch (a: Buffer, b: Buffer, tol: number): number {
  const n = Math.min(a.length, b.length) - 2
  let lit = 0
  let same = 0
  for (let p = 0; p < n; p += 3) {
    const [r1, g1, b1, r2, g2, b2] = [a[p], a[p + 1], a[p + 2], b[p], b[p + 1], b[p + 2]] as number[] as [number, number, number, number, number, number]
    if (r1 + g1 + b1 <= 60 && r2 + g2 + b2 <= 60) continue
    lit++
    if (Math.abs(r1 - r2) <= tol && Math.abs(g1 - g2) <= tol && Math.abs(b1 - b2) <= tol) same++
  }
  return lit === 0 ? 0 : same / lit
}

function watchErrors (page: Page): string[] {
  const errors: string[] = []
  page.on('pageerror', e => errors.push(e.message))
  page.on('console', msg => { if (msg.type() === 'error') errors.push(msg.text()) })
  page.on('response', r => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`) })
  return errors
}

/** Waits until the canvas keeps its picture (but for the blinking cursor) for a while: the BIOS has stopped drawing. */
async function stillCanvas (page: Page): Promise<void> {
  const full = await canvasStats(page)
  const size = { w: full.width, h: full.height }
  // Samples 700 ms apart (waitFor's interval); the first call only takes the first sample.
  let last: Buffer | undefined
  await waitFor(async () => {
    const now = Buffer.from((await canvasStats(page, size)).rgb ?? '', 'base64')
    const still = last !== undefined && litMatch(last, now, 0) > 0.99
    last = now
    return still
  }, 20_000, 'a still screen', 700)
}

test('click-to-pixels through a real guacd: navigation start to the first lit canvas frame, 5 runs', { skip }, async (t) => {
  const { h, target, browser } = s
  const runs: Array<{ connected: number, pixels: number }> = []
  for (let i = 0; i < 5; i++) {
    const m = await h.mint({ target, protocol: 'guacamole', serverName: `guacd-run-${i}` })
    const page = await browser.newPage()
    const errors = watchErrors(page)
    // Checks every animation frame, from before the page's own scripts run; times are `performance.now()`,
    // which counts from the navigation's start.
    await page.addInitScript(`(() => {
      const look = () => {
        if (window.__connectedAt === undefined && document.body !== null && document.body.dataset.connected === 'true') window.__connectedAt = performance.now()
        let c = null
        for (const x of document.querySelectorAll('#screen canvas')) if (c === null || x.width * x.height > c.width * c.height) c = x
        if (c !== null && c.width > 0 && c.height > 0) {
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
          let lit = 0
          for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60 && ++lit > 200) break
          if (lit > 200) { window.__pixelsAt = performance.now(); return }
        }
        requestAnimationFrame(look)
      }
      requestAnimationFrame(look)
    })()`)
    await page.goto(m.grant.url)
    // A console that closes instead (guacd unreachable, ...) fails the run at once, with the page's sentence.
    const got = await waitFor(async () => {
      const g = await page.evaluate('({ pixels: window.__pixelsAt, connected: window.__connectedAt, closed: document.body?.dataset.closeReason })') as { pixels?: number, connected: number, closed?: string }
      return g.pixels !== undefined || g.closed !== undefined ? g : undefined
    }, 10_000, 'the first lit frame')
    assert.equal(got.closed, undefined, `the console closed: ${await page.textContent('#message') ?? ''}`)
    const r = { pixels: got.pixels as number, connected: got.connected }
    assert.equal(await page.getAttribute('body', 'data-connected'), 'true')
    assert.deepEqual(errors, [])
    runs.push(r)
    t.diagnostic(`run ${i + 1}: connected ${r.connected.toFixed(0)} ms, first lit frame ${r.pixels.toFixed(0)} ms after navigation start`)
    await page.close()
  }
  const px = runs.map(r => r.pixels).sort((a, b) => a - b)
  t.diagnostic(`first lit frame: min ${(px[0] as number).toFixed(0)} ms, median ${(px[2] as number).toFixed(0)} ms, max ${(px[4] as number).toFixed(0)} ms`)
})

test('through a real guacd, the console page shows the VM\'s screen, and Ctrl-Alt-Del reaches the VM', { skip }, async (t) => {
  const { h, vm, target, browser } = s
  const m = await h.mint({ target, protocol: 'guacamole', serverName: 'guacd-vm.example' })
  const page = await browser.newPage()
  const errors = watchErrors(page)
  const requests: string[] = []
  page.on('request', r => requests.push(r.url()))
  const t0 = Date.now()
  await page.goto(m.grant.url)
  await page.waitForSelector('body[data-connected="true"], body[data-close-reason]', { timeout: 10_000 })
  assert.equal(await page.getAttribute('body', 'data-close-reason'), null, `the console closed: ${await page.textContent('#message') ?? ''}`)
  t.diagnostic(`page to connected console through guacd: ${Date.now() - t0} ms`)
  assert.equal(await page.textContent('#name'), 'guacd-vm.example')
  assert.equal(new URL(page.url()).hash, '', 'the token is removed from the address bar')
  for (const u of requests) assert.ok(!u.includes(m.token), `a request carried the token in its URL: ${u}`)

  const shown = await waitFor(async () => { const s = await canvasStats(page); return s.lit > 200 ? s : undefined }, 10_000, 'a non-blank screen')
  assert.ok(shown.width >= 640 && shown.height >= 400, `screen ${shown.width}x${shown.height}`)

  // What the canvas shows is the VM's screen: libvirt's own screenshot, pixel for pixel (within JPEG's loss).
  await stillCanvas(page)
  let share = 0
  const { shot, before } = await waitFor(async () => {
    const shot = await screenshot(vm)
    const drawn = await canvasStats(page, { w: shot.width, h: shot.height })
    assert.ok(drawn.rgb !== undefined, `canvas ${drawn.width}x${drawn.height} smaller than the VM's ${shot.width}x${shot.height}`)
    share = litMatch(Buffer.from(drawn.rgb, 'base64'), shot.rgb, 40)
    return share > 0.95 ? { shot, before: drawn } : undefined
  }, 10_000, 'the canvas to match libvirt\'s screenshot').catch((err: Error) => { throw new Error(`${err.message} (last: ${(share * 100).toFixed(1)}% of the lit pixels)`) })
  t.diagnostic(`canvas matches libvirt's ${shot.width}x${shot.height} screenshot on ${(share * 100).toFixed(2)}% of the lit pixels`)

  // Ctrl-Alt-Del: the BIOS restarts, on the canvas and on libvirt's own screen. "Changed" means more than a
  // blinking cursor: at least 10% of the lit pixels differ from the picture before.
  const beforeRgb = Buffer.from(before.rgb as string, 'base64')
  await page.click('#cad')
  let canvasDiff = 0
  await waitFor(async () => {
    const now = await canvasStats(page, { w: shot.width, h: shot.height })
    canvasDiff = 1 - litMatch(beforeRgb, Buffer.from(now.rgb ?? '', 'base64'), 0)
    return canvasDiff > 0.1
  }, 10_000, 'the canvas to change after Ctrl-Alt-Del').catch((err: Error) => { throw new Error(`${err.message} (${(canvasDiff * 100).toFixed(2)}% of the lit pixels differ)`) })
  let shotDiff = 0
  await waitFor(async () => {
    shotDiff = 1 - litMatch(shot.rgb, (await screenshot(vm)).rgb, 0)
    return shotDiff > 0.1
  }, 10_000, 'libvirt\'s screenshot to change').catch((err: Error) => { throw new Error(`${err.message} (${(shotDiff * 100).toFixed(2)}% of the lit pixels differ)`) })
  t.diagnostic(`after Ctrl-Alt-Del, lit pixels changed: ${(canvasDiff * 100).toFixed(1)}% on the canvas, ${(shotDiff * 100).toFixed(1)}% on libvirt's screenshot`)
  assert.deepEqual(errors, [], 'no failed requests, script or CSP errors on the page')

  await page.click('#disconnect')
  await page.waitForSelector('body[data-close-reason="user"]')
  await page.close()
})

test('the gateway\'s logs hold no token and no VNC password on the real guacd path', { skip }, async () => {
  const { h } = s
  const logs = h.stack.logs()
  assert.ok(logs.includes('console viewer connected'))
  assert.ok(logs.includes('"protocol":"guacamole"'))
  assert.ok(!logs.includes('guacd connection ended with an error'), 'guacamole-lite reported no error')
  assert.ok(h.tokens.length >= 6)
  for (const tok of h.tokens) assert.ok(!logs.includes(tok))
  assert.ok(!logs.includes(PASSWORD))
})
