// The dashboard's actions on what waits, in Chromium against an API with no receiver (so that jobs stay
// queued and expired requests are dead-lettered by RabbitMQ itself): cancel a queued job from its detail
// panel, and replay a dead letter from the Dead letters tab to the queue it came from.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { startStack, waitFor } from '@porthole/testkit'
import { tenant } from './fixtures.js'
import { jobRow, logIn, opsBrowser } from './ops-browser.js'

const { page, problems, shot } = await opsBrowser('ops-dashboard-queued')

test('a queued job is cancelled from the page; an expired request is replayed from the dead letters to its queue', async (t) => {
  // Status jobs live one second: with nothing consuming them, RabbitMQ dead-letters them when it passes.
  const stack = await startStack(t, { services: ['api'], envFor: { api: { JOB_DEADLINE_STATUS_SECONDS: '1' } } })
  const acme = await tenant(stack, 'ops-queued')
  const server = (await stack.api('POST', '/v1/servers', { name: 'waiting-1', tenantId: acme.tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: `nowhere-${randomUUID().slice(0, 8)}` } })).body
  await logIn(page, stack, stack.adminToken)

  const job = (await stack.api('POST', `/v1/servers/${server.id as string}/power`, { action: 'off' }, { key: acme.customerKey })).body
  await page.waitForSelector(jobRow(job.id, 'queued'), { timeout: 15_000 })
  await page.click(jobRow(job.id))
  await page.waitForSelector('#job-detail button[data-action="cancel"]:enabled')
  assert.equal(await page.isDisabled('#job-detail button[data-action="retry"]'), true, 'a queued job is not retried')
  await page.click('#job-detail button[data-action="cancel"]')
  await page.waitForSelector(jobRow(job.id, 'cancelled'), { timeout: 10_000 })
  await page.waitForSelector('#job-detail button[data-action="cancel"]:disabled')
  assert.equal((await stack.api('GET', `/v1/jobs/${job.id as string}`)).body.state, 'cancelled')
  await shot(t, 'cancelled')

  const status = (await stack.api('GET', `/v1/servers/${server.id as string}/status?wait=0`, undefined, { key: acme.customerKey })).body
  const dead = `#dead-table tr[data-message-id="${status.id as string}"]`
  // The tab reads the dead letters when shown: show it until the expired request is there.
  await waitFor(async () => {
    await page.click('.tabs button[data-tab="jobs"]')
    await page.click('.tabs button[data-tab="dead"]')
    return await page.waitForSelector(dead, { timeout: 1000 }).then(() => true, () => false)
  }, 20_000, 'the expired status request among the dead letters', 200)
  assert.match(await page.textContent(dead) ?? '', new RegExp(`dead\\.interactive\\s*job\\s*${(status.id as string).slice(0, 8)}\\s*status.*expired\\s*${stack.ns}\\.jobs\\.receiver\\.interactive`))
  await shot(t, 'dead-letters')
  await page.click(`${dead} button[data-action="replay"]`)
  await page.waitForSelector(`#flash:has-text("Replayed to ${stack.ns}.jobs.receiver.interactive")`)
  await page.waitForSelector(dead, { state: 'detached', timeout: 10_000 })
  // Back in the queue it came from, as RabbitMQ counts it (no expiry this time: it waits for a receiver).
  const queue = `${stack.ns}.jobs.receiver.interactive`
  await waitFor(async () => ((await stack.api('GET', '/metrics', undefined, { key: null })).body as string).includes(`porthole_queue_messages{queue="${queue}"} 1`), 10_000, 'the replayed message in its queue')
  assert.deepEqual(problems, [], 'no page errors, console errors or CSP violations')
})
