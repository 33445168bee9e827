/**
 * The one Chromium launcher of the tests and the benchmarks: the machine's `/usr/bin/chromium` through
 * playwright-core, headless, in a throw-away profile directory, closed and removed by the scope's clean-up
 * (even when the test fails).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
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
