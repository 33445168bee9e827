/**
 * The one Chromium launcher of the tests and the benchmarks: the machine's `/usr/bin/chromium` through
 * playwright-core, headless, in a throw-away profile directory, closed and removed by the scope's clean-up
 * (even when the test fails).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import type { Scope } from './index.js'

export const CHROMIUM_PATH = '/usr/bin/chromium'
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run']

/** A browser context of its own (persistent, so that the profile is one temporary directory the clean-up removes). */
export async function launchChromium (scope: Scope, viewport?: { width: number, height: number }): Promise<BrowserContext> {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-chromium-'))
  let browser: BrowserContext
  try {
    browser = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: ARGS,
      ...(viewport === undefined ? {} : { viewport })
    })
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
  scope.after(async () => { await browser.close(); await rm(dir, { recursive: true, force: true }) })
  return browser
}

/**
 * Collects what a page did wrong, into the array it returns: script errors, console errors, failed responses
 * and CSP violations (the page's own policy must not have to refuse anything it does). Call before `goto`.
 * `failed` says which response statuses count (default: every 4xx and 5xx); `ignore` drops console lines a
 * test expects (such as the browser's note on a refusal the page asked for).
 */
export async function pageProblems (page: Page, o: { failed?: (status: number) => boolean, ignore?: (text: string) => boolean } = {}): Promise<string[]> {
  const failed = o.failed ?? ((s: number) => s >= 400)
  const problems: string[] = []
  page.on('pageerror', e => problems.push(e.message))
  page.on('console', m => { if (m.type() === 'error' && o.ignore?.(m.text()) !== true) problems.push(m.text()) })
  page.on('response', r => { if (failed(r.status())) problems.push(`${r.status()} ${r.url()}`) })
  await page.addInitScript("document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))")
  return problems
}

/**
 * A script for `page.evaluate` (or a frame's) on a console page: resolves at the first animation frame whose
 * screen canvas (the largest under `#screen`) has lit pixels, with that moment and the navigation's start
 * as epoch ms: `{ at, nav }`.
 */
export const FIRST_LIT_FRAME = `new Promise((resolve) => {
  const check = () => {
    const cs = [...document.querySelectorAll('#screen canvas')].filter(c => c.width > 0).sort((a, b) => b.width * b.height - a.width * a.height)
    const c = cs[0]
    if (c !== undefined) {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
      let lit = 0
      for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60 && ++lit > 200) break
      if (lit > 200) { resolve({ at: performance.timeOrigin + performance.now(), nav: performance.timeOrigin }); return }
    }
    requestAnimationFrame(check)
  }
  check()
})`
