/** Chromium for the dashboard's tests: one browser per file, page errors collected, screenshots, the login. */
import assert from 'node:assert/strict'
import { after } from 'node:test'
import { mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BrowserContext, Page } from 'playwright-core'
import type { Stack } from '@porthole/testkit'
import { launchChromium, pageProblems } from '@porthole/testkit/chromium'

const OUT = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-output')

export interface OpsBrowser {
  browser: BrowserContext
  page: Page
  /** Page errors, console errors, CSP violations, 404s and 5xx the page met. */
  problems: string[]
  shot: (t: { diagnostic: (s: string) => void }, name: string, p?: Page) => Promise<void>
}

/** A Chromium closed after the file's tests, with one page watched for problems. */
export async function opsBrowser (prefix: string): Promise<OpsBrowser> {
  await mkdir(OUT, { recursive: true })
  const browser = await launchChromium({ after }, { width: 1366, height: 800 })
  const page = await browser.newPage()
  // Refusals the page expects (401 before the login, a wrong key) show as failed loads: server errors and
  // missing routes are counted apart.
  const problems = await pageProblems(page, { failed: s => s >= 500 || s === 404, ignore: text => text.startsWith('Failed to load resource') })
  return {
    browser,
    page,
    problems,
    shot: async (t, name, p = page) => {
      const file = join(OUT, `${prefix}-${name}.png`)
      await p.screenshot({ path: file, fullPage: true })
      t.diagnostic(`screenshot: ${file}`)
    }
  }
}

/** Opens /ops, logs in with `key` through the form and waits for the live stream. */
export async function logIn (page: Page, stack: Stack, key: string): Promise<void> {
  const res = await page.goto(`${stack.apiUrl}/ops`)
  assert.match(res?.headers()['content-security-policy'] ?? '', /script-src 'self'/)
  await page.waitForSelector('#login-form', { state: 'visible' })
  await page.fill('#login-key', key)
  await page.click('#login-form button[type=submit]')
  await page.waitForSelector('body[data-live="on"]', { timeout: 15_000 })
}

/** A job's row in the jobs table, in `state` when given. */
export const jobRow = (jobId: string, state?: string): string => `#jobs-table tr[data-job-id="${jobId}"]${state === undefined ? '' : `[data-state="${state}"]`}`
