// The operators' dashboard shows kiosk pools with their slots, live: a real pool (real libvirt, qcow2
// clones), a hand-out through the API, and the Pools tab in Chromium following it without a reload.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { waitFor } from '@porthole/testkit'
import { logIn, opsBrowser } from './ops-browser.js'
import { poolKit } from './pool-fixtures.js'

const { stack, acme, pool, readyPool, handOut } = await poolKit()
const { page, problems, shot } = await opsBrowser('pools-dashboard')

test('the Pools tab shows a pool, its counts and each slot, and follows a hand-out live', async (t) => {
  const p = await pool(t, { size: 1 })
  await readyPool(p.name, 1)
  const operator = (await stack.api('POST', '/v1/api-keys', { role: 'operator', name: 'pools-dashboard' })).body as { key: string }
  await logIn(page, stack, operator.key)
  await page.click('.tabs button[data-tab="pools"]')
  const row = `#pools-table tr[data-pool="${p.name}"]`
  await page.waitForSelector(`${row}[data-ready="1"][data-in-use="0"]`, { timeout: 30_000 })
  assert.equal(await page.textContent(`${row} td:nth-child(2)`), acme.tenantId)
  assert.match(await page.textContent(`${row} [data-clone-state="ready"]`) ?? '', /^0: ready$/)
  await shot(t, 'ready')

  const r = await handOut(p.name, acme.customerKey)
  assert.equal(r.status, 201, JSON.stringify(r.body))
  // The tab refreshes by itself (on events and every 5 s): the slot's clone is now in use.
  await page.waitForSelector(`${row}[data-in-use="1"]`, { timeout: 30_000 })
  await waitFor(async () => await page.$(`${row} [data-clone-state="in_use"]`) !== null, 30_000, 'the handed-out clone shown in use')
  await shot(t, 'in-use')
  assert.deepEqual(problems, [])
})
