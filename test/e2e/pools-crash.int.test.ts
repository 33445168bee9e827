// Kiosk pools when things go wrong: failing and hanging hooks, and SIGKILL of the agents during a refill and
// during a disposal, and of the API during a hand-out. After each, what libvirt and the file system hold is
// exactly what the pool should have: nothing leaks, nothing is handed out twice.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import type { PoolClone } from '@porthole/contracts'
import { openSse, poolDomains, poolOverlays, waitFor } from '@porthole/testkit'
import { defined, poolKit } from './pool-fixtures.js'

const { stack, overlays, acme, pool, readyPool, handOut } = await poolKit()
const redis = new Redis(stack.svc.redisUrl)
test.after(() => { redis.disconnect() })

/** The pool's clone records as Redis holds them (what the controller knows). */
async function records (name: string): Promise<PoolClone[]> {
  return Object.values(await redis.hgetall(`${stack.ns}:pool:${name}:clones`)).map(r => JSON.parse(r) as PoolClone)
}

/** libvirt and the overlay directory hold exactly `size` running clones of the pool, each with its overlay. */
async function exactly (name: string, size: number): Promise<string[]> {
  await readyPool(name, size)
  return await waitFor(async () => {
    const doms = (await poolDomains(name)).sort()
    const files = (await poolOverlays(overlays, name)).map(f => f.replace(/\.qcow2$/, '')).sort()
    return doms.length === size && JSON.stringify(doms) === JSON.stringify(files) ? doms : undefined
  }, 60_000, `pool ${name} to hold exactly ${size} clones, each with its overlay`, 200)
}

async function agentsMetric (line: RegExp): Promise<number> {
  const text = await (await fetch(stack.metricsUrls.agents as string)).text()
  return Number(line.exec(text)?.[1] ?? NaN)
}

test('a failing hook and a hanging one fail their clones only; three failures stop the refill until a PATCH', async (t) => {
  const healthy = await pool(t, { size: 1 })
  const sse = await openSse(`${stack.apiUrl}/v1/events?types=pool`, stack.adminToken)
  t.after(() => { sse.close() })
  const p = await pool(t, { size: 1, hooks: ['fail'] })
  const failing = await waitFor(async () => {
    const r = await stack.api('GET', `/v1/pools/${p.name}`)
    return r.body.state === 'failing' ? r.body : undefined
  }, 90_000, 'the pool to stop refilling', 200)
  assert.match(failing.lastError, /hook fail failed \(exit status 3\): no seed for you/)
  assert.ok(failing.failing >= 3, `failures counted: ${failing.failing}`)
  assert.deepEqual(await poolDomains(p.name), [], 'no clone of a failed hook was left defined')
  assert.deepEqual(await poolOverlays(overlays, p.name), [], 'nor its overlay')
  assert.equal(await agentsMetric(new RegExp(`porthole_pool_failing\\{pool="${p.name}"\\} (\\d+)`)), 1)
  assert.ok(await agentsMetric(new RegExp(`porthole_pool_clone_failures_total\\{pool="${p.name}"\\} (\\d+)`)) >= 3)
  // The pool's events told it: clone failures, then failing.
  await waitFor(() => sse.events.some(e => e.event === 'pool' && e.data.pool === p.name && e.data.event === 'failing'), 10_000, 'the failing event')
  const mine = sse.events.filter(e => e.data.pool === p.name).map(e => e.data.event as string)
  assert.ok(mine.filter(e => e === 'clone-failed').length >= 3, mine.join(','))
  // The agents and every other pool carry on.
  await readyPool(healthy.name, 1)

  // A hanging hook is killed at POOL_HOOK_TIMEOUT_SECONDS and fails its clone the same way.
  const hang = await stack.api('PATCH', `/v1/pools/${p.name}`, { hooks: ['hang'] })
  assert.equal(hang.status, 200, JSON.stringify(hang.body))
  await waitFor(async () => {
    const r = await stack.api('GET', `/v1/pools/${p.name}`)
    return r.body.state === 'failing' && /hook hang did not finish within 5 s/.test(r.body.lastError ?? '') ? r.body : undefined
  }, 120_000, 'the hanging hook to fail the pool', 200)
  assert.deepEqual(await poolDomains(p.name), [])

  // Fixed: the pool refills again.
  const fixed = await stack.api('PATCH', `/v1/pools/${p.name}`, { hooks: [] })
  assert.equal(fixed.status, 200, JSON.stringify(fixed.body))
  assert.equal(fixed.body.state, 'active')
  await exactly(p.name, 1)
})

test('SIGKILL of the agents during a refill leaves nothing behind, and the pool is back to its size', async (t) => {
  const p = await pool(t, { size: 2, hooks: ['slow'] })
  // A clone is under way (its overlay made, its hook running): kill the agents now.
  const unfinished = await waitFor(async () => {
    const starting = (await records(p.name)).filter(c => c.state === 'starting')
    const files = await poolOverlays(overlays, p.name)
    return starting.some(c => files.includes(`${c.name}.qcow2`)) ? starting.map(c => c.name) : undefined
  }, 60_000, 'a clone under way', 20)
  await stack.stop('agents', true)
  await stack.start('agents')
  const clones = await exactly(p.name, 2)
  for (const name of unfinished) {
    if (clones.includes(name)) continue // it had finished just before the kill
    assert.equal(await defined(name), false, `the unfinished clone ${name} is not defined`)
  }
  assert.equal((await records(p.name)).length, 2, 'no record of the unfinished clones is left')
})

test('SIGKILL of the agents during a disposal: the clone is still destroyed, and the pool refilled', async (t) => {
  const p = await pool(t, { size: 1 })
  await readyPool(p.name, 1)
  const r = await handOut(p.name, acme.customerKey)
  assert.equal(r.status, 201, JSON.stringify(r.body))
  const [clone] = await poolDomains(p.name)
  assert.ok(clone !== undefined)
  assert.equal((await stack.api('DELETE', `/v1/console-sessions/${r.body.sessionId}`)).status, 204)
  await waitFor(async () => (await records(p.name)).some(c => c.name === clone && c.state === 'disposing'), 30_000, 'the disposal to start', 5)
  await stack.stop('agents', true)
  await stack.start('agents')
  await waitFor(async () => !await defined(clone), 60_000, `clone ${clone} to be destroyed after the restart`, 200)
  const [next] = await exactly(p.name, 1)
  assert.notEqual(next, clone, 'a new clone, under a new name')
  assert.equal((await stack.api('GET', `/v1/servers/${r.body.serverId}`)).status, 404, 'the server record went too')
})

test('SIGKILL of the API during a hand-out: the claim is completed or its VM destroyed, never handed out twice', async (t) => {
  // A console bound but never delivered (the API died after the bind) is never opened: the idle timeout ends it.
  const p = await pool(t, { size: 1, idleTimeoutSeconds: 10 })
  await readyPool(p.name, 1)
  const [clone] = await poolDomains(p.name)
  assert.ok(clone !== undefined)
  const pending = handOut(p.name, acme.customerKey).catch(() => undefined) // the API dies under it
  await waitFor(async () => (await records(p.name)).some(c => c.name === clone && c.state !== 'ready'), 30_000, 'the claim', 2)
  await stack.stop('api', true)
  const answer = await pending
  await stack.start('api')
  if (answer?.status === 201) {
    // It was completed before the kill: that one request has it, bound to its session.
    assert.equal((await records(p.name)).find(c => c.name === clone)?.sessionId, answer.body.sessionId)
    assert.equal((await stack.api('DELETE', `/v1/console-sessions/${answer.body.sessionId}`)).status, 204)
  }
  // Either way the clone goes (revoked; its claim never completed within POOL_CLAIM_TIMEOUT_SECONDS; or its
  // console, never opened, idle) ...
  await waitFor(async () => !await defined(clone), 90_000, `clone ${clone} to be destroyed`, 200)
  // ... and the next hand-out gets a new one.
  await exactly(p.name, 1)
  const next = await handOut(p.name, acme.customerKey)
  assert.equal(next.status, 201, JSON.stringify(next.body))
  const server = await stack.api('GET', `/v1/servers/${next.body.serverId}`)
  assert.notEqual(server.body.name, clone, 'never the claimed clone again')
})
