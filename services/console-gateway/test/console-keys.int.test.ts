// Runs alone: a real guest (SeaBIOS) shows its boot menu for a few seconds of its own; the key sent into it
// must land within them, which a second test file loading the other core can delay past.
/**
 * The console page's keyboard tools in Chromium (issue #12, parts 1, 2 and 6): "Paste as keys", the key
 * menu, the view choice and the phone key bar. Their effect is asserted where it lands:
 * - at the RFB level, with a VNC server of this file's own behind the real gateway, which records every
 *   key event the page sends (keysym, and the scancode when it offers QEMU's extended key event, as QEMU
 *   does) and every SetDesktopSize: the exact sequence, its order, its pace and a cancel;
 * - on a real libvirt VM, whose SeaBIOS boot menu (read from libvirt's own screenshot) opens on Esc from
 *   the menu, closes on Ctrl-Alt-Del, and boots its first entry when "1" is pasted;
 * - on a serial line, through a SOL bridge stand-in that records the bytes.
 * Page screenshots go to dist/test-output/ (their paths are printed as diagnostics).
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BrowserContext, Page } from 'playwright-core'
import { tinyDomain, waitFor, type TinyDomain } from '@porthole/testkit'
import { pageProblems } from '@porthole/testkit/chromium'
import type { ConsoleTarget } from '@porthole/contracts'
import { decodePng, fileScope, harness, launchChromium, litInTextRow, recorder as recorderIn, solBridge, vmScreenshot, vncTarget, type Harness, type KeyEvent, type Recorder } from './support.js'

const suite = fileScope(after)
const OUT = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-output')
let h: Harness
let browser: BrowserContext

before(async () => {
  ;[h, browser] = await Promise.all([harness(suite), launchChromium(suite, { width: 1024, height: 700 })])
  await mkdir(OUT, { recursive: true })
})

async function shot (t: { diagnostic: (s: string) => void }, page: Page, name: string): Promise<void> {
  const file = join(OUT, `console-keys-${name}.png`)
  await page.screenshot({ path: file })
  t.diagnostic(`screenshot: ${file}`)
}

/** One key event as the server got it: `d`/`u`, the keysym in hex, and the XT scancode (extended key events only). */
/** A recording VNC server for this file. */
const recorder = async (o: { qemuKeys: boolean, width?: number, height?: number }): Promise<Recorder> => await recorderIn(suite, o)

/** Key events as `d:keysym[:scancode]` / `u:…`, hexadecimal: what the assertions compare. */
const show = (ks: KeyEvent[]): string[] => ks.map(k => `${k.down ? 'd' : 'u'}:${k.keysym.toString(16)}${k.scancode === undefined ? '' : ':' + k.scancode.toString(16)}`)
/** The press and release of each key, modifiers around: `[keysym, scancode?]` in pressing order. */
const tap = (...keys: Array<[number, number?]>): string[] => {
  const f = (d: boolean) => ([k, s]: [number, number?]): string => `${d ? 'd' : 'u'}:${k.toString(16)}${s === undefined ? '' : ':' + s.toString(16)}`
  return [...keys.map(f(true)), ...[...keys].reverse().map(f(false))]
}

async function open (target: ConsoleTarget, o: { protocol?: 'vnc' | 'serial' } = {}): Promise<{ page: Page, errors: string[] }> {
  const m = await h.mint({ target, ...(o.protocol === undefined ? {} : { protocol: o.protocol }) })
  const page = await browser.newPage()
  const errors = await pageProblems(page)
  await page.goto(m.grant.url)
  await page.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  return { page, errors }
}

async function paste (page: Page, text: string, o: { layout?: string, pace?: string } = {}): Promise<void> {
  if (await page.isHidden('#paste')) await page.click('#paste-open')
  await page.fill('#paste-text', text)
  if (o.layout !== undefined) await page.selectOption('#paste-layout', o.layout)
  if (o.pace !== undefined) await page.selectOption('#paste-pace', o.pace)
  await page.click('#paste-go')
}

test('paste as keys, German guest on a QEMU-like server: the keys of the guest\'s layout, by scancode, one character at a time at the pace', async (t) => {
  const r = await recorder({ qemuKeys: true })
  const { page, errors } = await open(r.target)
  await paste(page, 'zy@Ä-\n', { layout: 'de', pace: '120' })
  await page.waitForSelector('body[data-paste="done"]', { timeout: 10_000 })
  assert.equal(await page.textContent('#paste-status'), 'Typed 6 keys.')
  await shot(t, page, 'paste-de')
  const SHIFT: [number, number] = [0xffe1, 0x2a]
  const ALTGR: [number, number] = [0xfe03, 0xb8] // AltRight: XT e0 38, as noVNC puts it on the wire
  const expected = [
    ...tap([0x7a, 0x15]), // z: the key a US keyboard calls Y
    ...tap([0x79, 0x2c]), // y: the one it calls Z
    ...tap(ALTGR, [0x40, 0x10]), // @: AltGr-Q
    ...tap(SHIFT, [0xc4, 0x28]), // Ä: Shift and the key right of Ö
    ...tap([0x2d, 0x35]), // -: the key US calls /
    ...tap([0xff0d, 0x1c]) // Enter
  ]
  await waitFor(() => r.keys.length >= expected.length, 5000, 'all key events at the server')
  assert.deepEqual(show(r.keys), expected)
  // Each character's first key, one after the other: never sooner than the pace (here 120 ms; the median gap
  // so that one frame held up in transit does not decide it).
  const starts = r.keys.filter((_, i) => [0, 2, 4, 8, 12, 14].includes(i)).map(k => k.at)
  const gaps = starts.slice(1).map((s, i) => s - (starts[i] as number)).sort((a, b) => a - b)
  t.diagnostic(`gaps between characters at the server: ${gaps.map(g => g.toFixed(0)).join(', ')} ms`)
  assert.ok((gaps[2] as number) >= 100, `median gap ${gaps[2]} ms at a 120 ms pace`)
  assert.deepEqual(errors, [])
  await page.close()
})

test('paste as keys on a keysym-only server (as through guacd or a BMC): the character\'s keysym with the layout\'s modifiers; refused text sends nothing; Stop typing stops', async (t) => {
  const r = await recorder({ qemuKeys: false })
  const { page, errors } = await open(r.target)
  await paste(page, 'Az!', { layout: 'us', pace: '20' })
  await page.waitForSelector('body[data-paste="done"]', { timeout: 10_000 })
  const expected = [...tap([0xffe1], [0x41]), ...tap([0x7a]), ...tap([0xffe1], [0x21])]
  await waitFor(() => r.keys.length >= expected.length, 5000, 'all key events at the server')
  assert.deepEqual(show(r.keys), expected)

  // A character the layout lacks: a clear sentence, and nothing typed.
  await paste(page, 'naïve', { layout: 'us' })
  await waitFor(async () => /cannot type: "ï"/.test(await page.textContent('#paste-status') ?? ''), 5000, 'the refusal')
  assert.equal(await page.getAttribute('body', 'data-paste'), 'done', 'no typing started')

  // Slow, then stopped after a few keys: the server has exactly the keys the page counted, and the next
  // paste's keys follow them directly.
  r.keys.length = 0
  await paste(page, 'abcdefghijklmnop', { pace: '300' })
  await waitFor(async () => /Typing… [2-9] of 16/.test(await page.textContent('#paste-status') ?? ''), 10_000, 'a few keys typed')
  await page.click('#paste-cancel')
  await page.waitForSelector('body[data-paste="cancelled"]', { timeout: 5000 })
  const m = /^Stopped after (\d+) of 16 keys\.$/.exec(await page.textContent('#paste-status') ?? '')
  assert.ok(m !== null)
  const n = Number(m[1])
  await shot(t, page, 'paste-stopped')
  await paste(page, 'Z', { pace: '20' })
  await page.waitForSelector('body[data-paste="done"]', { timeout: 5000 })
  await waitFor(() => r.keys.some(k => k.keysym === 0x5a), 5000, 'the second paste at the server')
  assert.deepEqual(show(r.keys), [...[...'abcdefghijklmnop'.slice(0, n)].flatMap(c => tap([c.charCodeAt(0)])), ...tap([0xffe1], [0x5a])])
  assert.deepEqual(errors, [])
  await page.close()
})

test('the key menu sends each key a browser keeps for itself: Ctrl-Alt-Del, Ctrl-Alt-F1…F12, Alt-Tab, Windows, Esc, Print Screen', async (t) => {
  const r = await recorder({ qemuKeys: true })
  const { page, errors } = await open(r.target)
  const XT: Record<string, number> = { ControlLeft: 0x1d, AltLeft: 0x38, Delete: 0xd3, Tab: 0x0f, MetaLeft: 0xdb, Escape: 0x01, PrintScreen: 0x54 }
  const F = [0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40, 0x41, 0x42, 0x43, 0x44, 0x57, 0x58]
  const items: Array<[string, string, Array<[number, number]>]> = [
    ['ctrl-alt-del', 'Ctrl-Alt-Del', [[0xffe3, XT.ControlLeft as number], [0xffe9, XT.AltLeft as number], [0xffff, XT.Delete as number]]],
    ...F.map((s, i): [string, string, Array<[number, number]>] => [`ctrl-alt-f${i + 1}`, `Ctrl-Alt-F${i + 1}`, [[0xffe3, 0x1d], [0xffe9, 0x38], [0xffbe + i, s]]]),
    ['alt-tab', 'Alt-Tab', [[0xffe9, 0x38], [0xff09, XT.Tab as number]]],
    ['super', 'Windows key', [[0xffeb, XT.MetaLeft as number]]],
    ['esc', 'Esc', [[0xff1b, XT.Escape as number]]],
    ['print', 'Print Screen', [[0xff61, XT.PrintScreen as number]]]
  ]
  let first = true
  for (const [id, label, keys] of items) {
    r.keys.length = 0
    await page.click('#keys summary')
    if (first) { await shot(t, page, 'key-menu'); first = false }
    assert.equal(await page.textContent(`#keymenu [data-combo="${id}"]`), label)
    await page.click(`#keymenu [data-combo="${id}"]`)
    await waitFor(() => r.keys.length >= 2 * keys.length, 5000, `the keys of ${label}`)
    assert.deepEqual(show(r.keys), tap(...keys), label)
    assert.equal(await page.getAttribute('#keys', 'open'), null, 'the menu closes after a choice')
  }
  assert.deepEqual(errors, [])
  await page.close()
})

test('the view: fit to window, 1:1 and remote resize, remembered by the browser', async (t) => {
  const r = await recorder({ qemuKeys: true, width: 1600, height: 1200 })
  const canvasWidth = async (page: Page): Promise<number> => await page.evaluate('document.querySelector("#screen canvas").getBoundingClientRect().width') as number
  const { page, errors } = await open(r.target)
  assert.equal(await page.inputValue('#scale'), 'fit')
  await waitFor(async () => (await canvasWidth(page)) < 1024, 5000, 'the 1600-pixel screen fitted into 1024')
  await page.selectOption('#scale', 'actual')
  await waitFor(async () => (await canvasWidth(page)) === 1600, 5000, 'the screen at 1:1')
  await shot(t, page, 'view-actual')
  await page.close()

  // Remembered: the next console in this browser opens at 1:1.
  const again = await open(r.target)
  assert.equal(await again.page.inputValue('#scale'), 'actual')
  await waitFor(async () => (await canvasWidth(again.page)) === 1600, 5000, 'the screen at 1:1 again')
  // Remote resize: the server is asked for the size of the page's screen area.
  await again.page.selectOption('#scale', 'remote')
  const area = await again.page.evaluate('(() => { const s = document.querySelector("#screen"); return { width: s.clientWidth, height: s.clientHeight } })()') as { width: number, height: number }
  await waitFor(() => r.resizes.length > 0, 5000, 'a SetDesktopSize at the server')
  assert.deepEqual(r.resizes.at(-1), area)
  await again.page.selectOption('#scale', 'fit')
  assert.deepEqual([...errors, ...again.errors], [])
  await again.page.close()
})

test('full screen asks for the Keyboard Lock API, and lets go of it on leaving; Esc typed then reaches the server', async () => {
  const r = await recorder({ qemuKeys: false })
  const m = await h.mint({ target: r.target })
  const page = await browser.newPage()
  const errors = await pageProblems(page)
  // Records the page's calls; the browser's own lock still runs.
  await page.addInitScript(`(() => {
    const kb = navigator.keyboard
    if (kb === undefined) return
    window.portholeLocks = []
    const lock = kb.lock.bind(kb), unlock = kb.unlock.bind(kb)
    kb.lock = (...a) => { window.portholeLocks.push('lock'); return lock(...a).then(() => window.portholeLocks.push('locked'), (e) => window.portholeLocks.push('refused ' + e.name)) }
    kb.unlock = () => { window.portholeLocks.push('unlock'); unlock() }
  })()`)
  await page.goto(m.grant.url)
  await page.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  await page.click('#fullscreen')
  await waitFor(async () => await page.evaluate('document.fullscreenElement !== null'), 5000, 'full screen')
  await waitFor(async () => ((await page.evaluate('window.portholeLocks')) as string[]).includes('locked'), 5000, 'the keyboard locked')
  assert.equal(await page.textContent('#fullscreen'), 'Leave full screen')
  await page.click('#screen')
  await page.keyboard.press('Escape')
  await waitFor(() => r.keys.length >= 2, 5000, 'Esc at the server')
  assert.deepEqual(show(r.keys), tap([0xff1b]))
  await page.click('#fullscreen')
  await waitFor(async () => await page.evaluate('document.fullscreenElement === null'), 5000, 'full screen left')
  // fullscreenchange comes a frame after the element is gone.
  await waitFor(async () => ((await page.evaluate('window.portholeLocks')) as string[]).length >= 3, 5000, 'the keyboard unlocked')
  assert.deepEqual(await page.evaluate('window.portholeLocks'), ['lock', 'locked', 'unlock'])
  assert.equal(await page.textContent('#fullscreen'), 'Full screen')
  assert.deepEqual(errors, [])
  await page.close()
})

test('on a phone-sized screen an on-screen key bar sends Esc, Tab, arrows, and holds Ctrl and Alt down until pressed again', async (t) => {
  const r = await recorder({ qemuKeys: false })
  const m = await h.mint({ target: r.target })
  const page = await browser.newPage()
  await page.setViewportSize({ width: 390, height: 760 })
  const errors = await pageProblems(page)
  await page.goto(m.grant.url)
  await page.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
  assert.ok(await page.isVisible('#keybar'))
  // Every control has a name a screen reader can say, and none lies outside the phone's width.
  const unnamed = await page.evaluate(`[...document.querySelectorAll('button, select, summary, textarea')].filter(e => e.offsetParent !== null && (e.getAttribute('aria-label') ?? e.labels?.[0]?.textContent ?? e.textContent).trim() === '').map(e => e.outerHTML)`)
  assert.deepEqual(unnamed, [])
  const wide = await page.evaluate('document.documentElement.scrollWidth') as number
  assert.ok(wide <= 390, `the page is ${wide} px wide`)
  await shot(t, page, 'phone')
  await page.click('#keybar [data-mod="Control"]')
  assert.equal(await page.getAttribute('#keybar [data-mod="Control"]', 'aria-pressed'), 'true')
  await page.click('#keybar [data-key="Escape"]')
  await page.click('#keybar [data-key="Left"]')
  await page.click('#keybar [data-mod="Control"]')
  await page.click('#keybar [data-key="Tab"]')
  const expected = ['d:ffe3', ...tap([0xff1b]), ...tap([0xff51]), 'u:ffe3', ...tap([0xff09])]
  await waitFor(() => r.keys.length >= expected.length, 5000, 'the key bar\'s keys at the server')
  assert.deepEqual(show(r.keys), expected)
  assert.deepEqual(errors, [])
  await page.close()
})

test('a serial console: pasted text reaches the line at the pace, and the key bar\'s Esc, arrows and latched Ctrl as a terminal sends them', async (t) => {
  const bridge = await solBridge(t, h.stack.solBridgeSecret, 'login: ')
  const { page, errors } = await open(bridge.target, { protocol: 'serial' })
  assert.equal(await page.isVisible('#keys'), false, 'no key menu on a serial line')
  await paste(page, 'root\nls -l\n', { pace: '20' })
  await page.waitForSelector('body[data-paste="done"]', { timeout: 10_000 })
  await waitFor(() => bridge.received() === 'root\rls -l\r', 5000, 'the pasted text on the line')
  await shot(t, page, 'serial-paste')
  await page.click('#paste-close')
  await page.setViewportSize({ width: 390, height: 760 })
  await page.click('#keybar [data-key="Escape"]')
  await page.click('#keybar [data-key="Up"]')
  await page.click('#keybar [data-mod="Control"]')
  await page.keyboard.type('c')
  await waitFor(() => bridge.received().endsWith('\x1b\x1b[A\x03'), 5000, 'Esc, Up and Ctrl-C on the line')
  assert.equal(await page.getAttribute('#keybar [data-mod="Control"]', 'aria-pressed'), 'false', 'Ctrl applies to one key')
  assert.deepEqual(errors, [])
  await page.close()
})

/**
 * A tiny domain whose SeaBIOS offers its boot menu ("Press ESC for boot menu", for a minute) and lists an
 * empty CD drive as entry 1: the one screen of a diskless VM that reads keys and shows it did.
 */
async function bootMenuDomain (t: { after: (fn: () => Promise<void>) => void }, password: string): Promise<TinyDomain> {
  // The shared tiny domain, with a boot menu and a CD drive (no medium) added.
  return await tinyDomain(t, {
    vncPassword: password,
    editXml: xml => xml.replace("<boot dev='hd'/>", "<boot dev='cdrom'/><bootmenu enable='yes' timeout='60000'/>")
      .replace('<devices>', "<devices><disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>")
  })
}

test('on a real VM: Esc from the key menu opens SeaBIOS\'s boot menu, Ctrl-Alt-Del restarts the BIOS, a pasted "1" boots the first entry (libvirt\'s screenshots)', async (t) => {
  const vm = await bootMenuDomain(t, 'b00tm3nu')
  const { page, errors } = await open(await vncTarget(await vm.vncPort(), 'b00tm3nu'))
  // Text rows of libvirt's own screenshot: 3 "Press ESC for boot menu.", 5 "Select boot device:",
  // 11 "Boot failed: Could not read from CDROM" (after 10 "Booting from DVD/CD...").
  const rows = async (): Promise<number[]> => { const s = decodePng(await vmScreenshot(vm)); return [3, 5, 11].map(r => litInTextRow(s, r)) }
  const until = async (what: string, ok: (r: number[]) => boolean): Promise<void> => {
    await waitFor(async () => ok(await rows()), 20_000, what, 100)
  }
  const TEXT = 150 // a line of text; a cursor lights under 20
  const menu = async (): Promise<void> => {
    // The prompt waits a minute for Esc; on a loaded machine a key can land before the firmware listens.
    for (let press = 0; ; press++) {
      await page.click('#keys summary')
      await page.click('#keymenu [data-combo="esc"]')
      const shown = await waitFor(async () => (await rows())[1] as number > TEXT, 5000, 'the boot menu', 100).then(() => true, () => false)
      if (shown) return
      if (press === 2) assert.fail('three presses of Esc from the key menu left the boot menu closed')
    }
  }
  await until('the boot menu prompt', ([prompt, select]) => (prompt as number) > TEXT && (select as number) < 30)
  await shot(t, page, 'vm-prompt')
  await menu()
  await shot(t, page, 'vm-boot-menu')
  // Ctrl-Alt-Del from the menu: the BIOS starts again, back at the prompt with no menu.
  await page.click('#keys summary')
  await page.click('#keymenu [data-combo="ctrl-alt-del"]')
  await until('the BIOS restarted (no boot menu)', ([, select]) => (select as number) < 30)
  await until('the boot menu prompt again', ([prompt, select]) => (prompt as number) > TEXT && (select as number) < 30)
  await menu()
  // The menu waits for one of its digits: the pasted "1" (the key a US keyboard has it on) boots the empty CD drive.
  await paste(page, '1', { layout: 'us', pace: '50' })
  await page.waitForSelector('body[data-paste="done"]', { timeout: 10_000 })
  await until('the CD boot attempt', ([, , failed]) => (failed as number) > TEXT)
  await shot(t, page, 'vm-booted-cd')
  assert.deepEqual(errors, [])
  await page.close()
})
