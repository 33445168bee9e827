// The operators' dashboard in Chromium against the whole running system: log in with an operator key, see a
// job appear and change live (no reload), retry a failed job from the page, revoke a live console from the
// page and watch its viewer's socket close; the agents and queues the page shows are the real ones.
// Page screenshots go to test/dist/test-output/ (their paths are printed as diagnostics).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Page } from 'playwright-core'
import { tinyDomain, waitFor, within } from '@porthole/testkit'
import { fileStack, kvmServer, tenant } from './fixtures.js'
import { jobRow, opsBrowser } from './ops-browser.js'

const stack = await fileStack()
const acme = await tenant(stack, 'ops-acme')
const operator = (await stack.api('POST', '/v1/api-keys', { role: 'operator', name: 'ops-dashboard' })).body as { id: string, key: string }
const { browser, page, problems, shot: snap } = await opsBrowser('ops-dashboard')
const shot = async (t: { diagnostic: (s: string) => void }, p: Page, name: string): Promise<void> => { await snap(t, name, p) }
const row = jobRow

test('log in with an operator key: a job appears and changes live, without a reload', async (t) => {
  const res = await page.goto(`${stack.apiUrl}/ops`)
  assert.match(res?.headers()['content-security-policy'] ?? '', /script-src 'self'/)
  await page.waitForSelector('#login-form', { state: 'visible' })
  await page.fill('#login-key', 'ph_wrong')
  await page.click('#login-form button[type=submit]')
  await page.waitForSelector('#login-error:has-text("unknown API key")')
  await shot(t, page, 'login')
  await page.fill('#login-key', operator.key)
  await page.click('#login-form button[type=submit]')
  await page.waitForSelector('body[data-live="on"]', { timeout: 15_000 })
  assert.match(await page.textContent('#whoami') ?? '', new RegExp(`operator · key ${operator.id}`))
  const cookies = await browser.cookies(`${stack.apiUrl}/ops`)
  const c = cookies.find(x => x.name === 'porthole_ops')
  assert.ok(c !== undefined && c.httpOnly && c.sameSite === 'Strict', JSON.stringify(cookies))
  assert.equal(await page.evaluate('document.cookie'), '', 'the page cannot read its session cookie')

  // Marked now: a reload would clear it.
  await page.evaluate('window.__noReload = true')
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const job = (await stack.api('POST', `/v1/servers/${id}/power`, { action: 'suspend' }, { key: acme.customerKey })).body
  await page.waitForSelector(row(job.id), { timeout: 15_000 })
  await page.waitForSelector(row(job.id, 'succeeded'), { timeout: 30_000 })
  assert.equal(await page.evaluate('window.__noReload'), true, 'updated in place, not reloaded')
  assert.match(await page.textContent(row(job.id)) ?? '', new RegExp(`power suspend.*succeeded.*${dom.name}.*kvm.*ops-acme`))
  await shot(t, page, 'jobs-live')
})

test('a failed job is retried from the page: the new job links to it and succeeds', async (t) => {
  const dom = await tinyDomain(t, { start: false })
  const id = await kvmServer(stack, acme.tenantId, { uri: dom.uri, name: `${dom.name}-typo` })
  const job = (await stack.api('POST', `/v1/servers/${id}/power`, { action: 'on' }, { key: acme.customerKey })).body
  await page.selectOption('#job-state', 'failed')
  await page.waitForSelector(row(job.id, 'failed'), { timeout: 30_000 })
  await page.click(row(job.id))
  await page.waitForSelector('#job-detail .job-error:has-text("not_found")')
  await shot(t, page, 'job-failed')
  // The operator fixes the record, then retries from the page.
  assert.equal((await stack.api('PATCH', `/v1/servers/${id}`, { connection: { uri: dom.uri, domain: dom.name } })).status, 200)
  await page.selectOption('#job-state', '')
  await page.click('#job-detail button[data-action="retry"]')
  const retry = await waitFor(async () => {
    const list = (await stack.api('GET', `/v1/jobs?serverId=${id}`)).body as Array<{ id: string, retryOf?: string }>
    return list.find(j => j.retryOf === job.id)
  }, 15_000, 'the retry job')
  await page.waitForSelector(row(retry.id, 'succeeded'), { timeout: 30_000 })
  await page.waitForSelector(`#job-detail a[data-retry-of="${job.id as string}"]`)
  assert.equal(await dom.state(), 'running', 'the retry reached libvirt')
  await shot(t, page, 'job-retried')
  const audit = (await stack.api('GET', `/v1/audit?serverId=${id}`)).body as Array<{ actor: string, jobId?: string }>
  assert.ok(audit.some(e => e.actor === operator.id && e.jobId === retry.id), 'the retry is audited as the operator')
})

test('a live console is revoked from the page and its viewer\'s socket closes', async (t) => {
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const grant = await stack.api('POST', `/v1/servers/${id}/console`, { ttlSeconds: 600 }, { key: acme.customerKey })
  assert.equal(grant.status, 201, JSON.stringify(grant.body))
  const viewer = await browser.newPage()
  t.after(async () => { await viewer.close() })
  const socket = new Promise<{ closed: Promise<void> }>(resolve => {
    viewer.on('websocket', ws => resolve({ closed: new Promise<void>(r => ws.on('close', () => r())) }))
  })
  await viewer.goto(grant.body.url)
  const ws = await within(socket, 15_000, 'the console page\'s WebSocket')
  await waitFor(async () => (await stack.api('GET', `/v1/console-sessions/${grant.body.sessionId as string}`)).body.connected === true, 15_000, 'the viewer connected')

  await page.click('.tabs button[data-tab="consoles"]')
  const sessionRow = `#sessions-table tr[data-session-id="${grant.body.sessionId as string}"]`
  await page.waitForSelector(`${sessionRow}:has-text("connected")`, { timeout: 15_000 })
  await shot(t, page, 'consoles')
  await page.click(`${sessionRow} button[data-action="revoke"]`)
  await within(ws.closed, 10_000, 'the viewer\'s socket to close after the revoke')
  await page.waitForSelector(sessionRow, { state: 'detached', timeout: 10_000 })
  const s = (await stack.api('GET', `/v1/console-sessions/${grant.body.sessionId as string}`)).body
  assert.ok(s.revokedAt !== undefined, JSON.stringify(s))
  const audit = (await stack.api('GET', `/v1/audit?serverId=${id}`)).body as Array<{ actor: string, action: string }>
  assert.ok(audit.some(e => e.actor === operator.id && e.action === 'console-session.revoke'))
})

test('agents, queues, dead letters and audit show the running system', async (t) => {
  await page.click('.tabs button[data-tab="agents"]')
  // The stack's agents process beats with the types it serves.
  await page.waitForSelector('#agents-table tbody tr:not(.dead)', { timeout: 15_000 })
  assert.match(await page.textContent('#agents-table tbody tr:not(.dead)') ?? '', /kvm/)
  await page.waitForSelector('#agent-types [data-agent-type="kvm"]:has-text("1 process")')
  await shot(t, page, 'agents')
  await page.click('.tabs button[data-tab="queues"]')
  await page.waitForSelector(`#queues-table tr[data-queue="${stack.ns}.jobs.receiver"]`)
  // The receiver consumes its queue: one consumer, as RabbitMQ says.
  assert.match(await page.textContent(`#queues-table tr[data-queue="${stack.ns}.jobs.receiver"]`) ?? '', /^\S+\s*0\s*–\s*1/)
  await shot(t, page, 'queues')
  await page.click('.tabs button[data-tab="dead"]')
  await page.waitForSelector('#dead-empty:visible, #dead-table tbody tr', { timeout: 10_000 })
  await page.click('.tabs button[data-tab="audit"]')
  await page.selectOption('#audit-tenant', acme.tenantId)
  await page.waitForSelector('#audit-table tbody tr:has-text("job.power.on")', { timeout: 10_000 })
  await shot(t, page, 'audit')
  // Log out: the session ends, the page asks for a key again.
  await page.click('#logout')
  await page.waitForSelector('#login-form', { state: 'visible' })
  assert.equal((await browser.cookies(`${stack.apiUrl}/ops`)).find(x => x.name === 'porthole_ops'), undefined)
  assert.deepEqual(problems, [], 'no page errors, console errors or CSP violations')
})
