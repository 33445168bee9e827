// Runs alone: it restarts the machine's real RabbitMQ (rabbitmqctl stop_app / start_app), which every other
// test file uses too.
// The broker restarts in the middle of a run of jobs: every job the API accepted still reaches a terminal
// state; requests made while it is down get 503 problem+json at once; the system recovers by itself.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { tinyDomain, waitFor } from '@porthole/testkit'
import { fileStack, finished, kvmServer, tenant } from './fixtures.js'

const run = promisify(execFile)
const stack = await fileStack()
const acme = await tenant(stack)

test('every accepted job ends while RabbitMQ restarts mid-run', { timeout: 180_000 }, async (t) => {
  const doms = await Promise.all([0, 1, 2].map(async () => await tinyDomain(t)))
  const ids = await Promise.all(doms.map(async d => await kvmServer(stack, acme.tenantId, d)))
  const accepted: string[] = []
  const refused: number[] = []
  let stop = false
  const load = (async () => {
    for (let i = 0; !stop; i++) {
      const server = ids[i % ids.length] as string
      const r = i % 2 === 0
        ? await stack.api('GET', `/v1/servers/${server}/status?wait=0`).catch(() => undefined)
        : await stack.api('POST', `/v1/servers/${server}/power`, { action: 'on' }).catch(() => undefined)
      if (r === undefined) continue
      if (r.status === 202) accepted.push(r.body.id)
      else if (r.status === 200) { /* status answered at once */ } else {
        assert.equal(r.status, 503, JSON.stringify(r.body))
        assert.match(r.headers.get('content-type') ?? '', /problem\+json/)
        refused.push(r.status)
      }
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  })()
  // Events, not fixed times: load until jobs were accepted, the outage until a request met it, and load again
  // until jobs were accepted after it.
  await waitFor(() => accepted.length >= 20, 60_000, 'twenty jobs accepted before the outage')
  try {
    await run('rabbitmqctl', ['stop_app'], { timeout: 60_000 })
    await waitFor(() => refused.length > 0, 60_000, 'a request to meet the outage')
  } finally {
    // Whatever happened, the broker comes back for the tests after this one.
    await run('rabbitmqctl', ['start_app'], { timeout: 60_000 })
  }
  await run('rabbitmqctl', ['await_startup'], { timeout: 60_000 })
  // Load goes on until the API publishes again.
  await waitFor(async () => (await stack.api('GET', '/readyz')).status === 200, 60_000, 'API ready again')
  const beforeReturn = accepted.length
  await waitFor(() => accepted.length >= beforeReturn + 10, 60_000, 'ten jobs accepted after the broker returned')
  stop = true
  await load
  const ends = await Promise.all(accepted.map(async id => await finished(stack, id, undefined, 90_000)))
  const byState = new Map<string, number>()
  for (const j of ends) byState.set(j.state, (byState.get(j.state) ?? 0) + 1)
  t.diagnostic(`accepted ${accepted.length}, refused ${refused.length}, ended: ${JSON.stringify(Object.fromEntries(byState))}`)
  // Nothing accepted was lost or left to time out: the outage is seconds, every deadline is longer.
  assert.deepEqual(Object.fromEntries(byState), { succeeded: accepted.length })
  // After the outage the pipeline works again end to end.
  const r = await stack.api('GET', `/v1/servers/${ids[0]}/status`)
  assert.equal(r.status, 200, JSON.stringify(r.body))
  assert.equal(r.body.power, 'on')
})
