// The dashboard shows values that come from outside — tenant and server names, agents' error messages, agent
// hosts, dead letters' fields, live consoles — as text, in Chromium: markup in them (`<img onerror>`, `"><script>`, `<svg
// onload>`) renders as the characters it is made of, no element of it reaches the DOM, no script of it runs,
// and the page's CSP never has to refuse anything (a refusal would mean something tried).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import type { Page } from 'playwright-core'
import { AmqpClient, names } from '@porthole/shared/amqp'
import { createLogger } from '@porthole/shared/logging'
import { SecretBox } from '@porthole/shared/crypto'
import { AgentRegistry, ConsoleSessionStore, JobStore, createRedis } from '@porthole/shared/store'
import { startStack, testSecretKey, waitFor } from '@porthole/testkit'
import { tenant } from './fixtures.js'
import { jobRow, logIn, opsBrowser } from './ops-browser.js'

const { page, problems, shot } = await opsBrowser('ops-hostile')

const H = {
  tenant: '<img src=x onerror="window.__pwned=1">',
  server: '"><script>window.__pwned=2</script><b x="',
  error: "'><svg onload=window.__pwned=3><iframe src=javascript:window.__pwned=4>",
  host: '</td><img src=x onerror=window.__pwned=5>',
  kind: '<script>window.__pwned=6</script>'
}

/** Nothing of the values became markup, and nothing of them ran. */
async function assertInert (p: Page, where: string): Promise<void> {
  assert.equal(await p.evaluate('window.__pwned'), undefined, `${where}: no hostile script ran`)
  const planted = await p.$$eval('img, svg, iframe, b[x], script:not([src]), [onerror], [onload]', els => els.map(e => e.outerHTML.slice(0, 120)))
  assert.deepEqual(planted, [], `${where}: no element of the hostile values in the DOM`)
  assert.deepEqual(problems, [], `${where}: no CSP violation, page error or failed load`)
}

const text = async (p: Page, sel: string): Promise<string> => await p.textContent(sel) ?? ''

test('hostile names, error messages, agent hosts, dead letters and consoles render as text; no script runs and the CSP holds', async (t) => {
  // No receiver: the job stays as the test puts it, and the dead letter stays dead.
  const stack = await startStack(t, { services: ['api'] })
  const acme = await tenant(stack, H.tenant)
  const server = await stack.api('POST', '/v1/servers', { name: H.server, tenantId: acme.tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: `nowhere-${randomUUID().slice(0, 8)}` } })
  assert.equal(server.status, 201, JSON.stringify(server.body))
  const job = (await stack.api('POST', `/v1/servers/${server.body.id as string}/power`, { action: 'off' }, { key: acme.customerKey })).body
  // What an agent would write: a failure whose message is the target's own words.
  const log = createLogger({ name: 'ops-hostile', level: 'warn' })
  const redis = createRedis(stack.svc.redisUrl, log, 'ops-hostile')
  t.after(() => { redis.disconnect() })
  assert.equal((await new JobStore(redis, stack.ns).transition(job.id, 'failed', { error: { code: 'action', message: H.error, retryable: false } })).status, 'ok')
  const at = new Date().toISOString()
  await new AgentRegistry(redis, stack.ns).beat({ instance: `${H.host}/1/1`, host: H.host, pid: 1, types: ['kvm'], startedAt: at, at, inFlight: [], done: 0 }, 60)
  // A live console session of the hostile server (as the gateway records one; its target sealed with a key of the test's own).
  const sessionId = randomUUID()
  const box = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: testSecretKey(), PORTHOLE_SECRET_KEY_ID: 't', PORTHOLE_OLD_SECRET_KEYS: '' })
  await new ConsoleSessionStore(redis, stack.ns).create({
    id: sessionId, serverId: server.body.id, tenantId: acme.tenantId, serverName: H.server, jobId: randomUUID(), protocol: 'vnc',
    target: box.seal({ kind: 'vnc', host: '127.0.0.1', port: 5900 }, sessionId), tokenHash: randomBytes(32).toString('hex'),
    createdAt: at, expiresAt: new Date(Date.now() + 600_000).toISOString(), singleUse: false
  })
  // A dead letter with markup in its fields: a message that expires where nothing consumes it.
  const amqp = new AmqpClient({ url: stack.svc.rabbitmqUrl, namespace: stack.ns, log, name: 'ops-hostile' })
  t.after(async () => { await amqp.close(1000) })
  await amqp.start(10_000)
  const ch = await amqp.rawChannel()
  t.after(async () => { await ch.close().catch(() => {}) })
  const deadId = randomUUID()
  ch.sendToQueue(names(stack.ns).receiverInteractiveQueue, Buffer.from(JSON.stringify({ id: deadId, kind: H.kind, serverId: H.server, tenantId: H.tenant })), { messageId: deadId, expiration: '1' })

  await logIn(page, stack, stack.adminToken)
  await page.selectOption('#job-state', 'failed')
  await page.waitForSelector(jobRow(job.id, 'failed'), { timeout: 15_000 })
  const row = await text(page, jobRow(job.id))
  assert.ok(row.includes(H.server) && row.includes(H.tenant), `the names as text in the row: ${row}`)
  await page.click(jobRow(job.id))
  await page.waitForSelector('#job-detail .job-error')
  assert.ok((await text(page, '#job-detail .job-error')).includes(H.error), 'the agent\'s message as text')
  await assertInert(page, 'jobs')
  await shot(t, 'jobs')

  await page.click('button[data-tab="agents"]')
  await waitFor(async () => (await text(page, 'main')).includes(H.host), 15_000, 'the agent\'s host on the Agents tab')
  await assertInert(page, 'agents')

  // The tab reads the dead letters when it is opened: open it until RabbitMQ has dead-lettered the message.
  const dead = `#dead-table tr[data-message-id="${deadId}"]`
  await waitFor(async () => { await page.click('button[data-tab="dead"]'); return await page.$(dead) !== null }, 30_000, 'the dead letter on its tab', 500)
  assert.ok((await text(page, dead)).includes(H.kind), `its kind as text: ${await text(page, dead)}`)
  assert.match(await page.getAttribute(`${dead} time`, 'datetime') ?? '', /^\d{4}-\d\d-\d\dT/, 'when it was dead-lettered')
  await assertInert(page, 'dead letters')
  await shot(t, 'dead-letters')

  await page.click('button[data-tab="consoles"]')
  const session = `#sessions-table tr[data-session-id="${sessionId}"]`
  await page.waitForSelector(session, { timeout: 15_000 })
  assert.ok((await text(page, session)).includes(H.server) && (await text(page, session)).includes(H.tenant), `the console's names as text: ${await text(page, session)}`)
  await assertInert(page, 'consoles')

  await page.click('button[data-tab="audit"]')
  await waitFor(async () => (await text(page, 'main')).includes('job.power.off'), 15_000, 'the audit tab')
  await assertInert(page, 'audit')
  // The document's title and the page's own scripts are untouched, too.
  assert.doesNotMatch(await page.title(), /<|pwned/)
})
