import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { createLogger } from '../../src/logging/index.js'
import { createRedis, keys, Lease, runLeased } from '../../src/store/index.js'
import { services, uniqueNamespace, waitFor } from '@porthole/testkit'

const log = createLogger({ name: 'test', level: 'silent' })

test('of two holders one takes the lease; only the holder renews or releases it', async (t) => {
  const svc = await services()
  const a = createRedis(svc.redisUrl, log, 'lease-a')
  const b = createRedis(svc.redisUrl, log, 'lease-b')
  const key = keys(uniqueNamespace()).lease('work')
  t.after(async () => { await a.del(key); a.disconnect(); b.disconnect() })
  const la = new Lease(a, key, 30_000)
  const lb = new Lease(b, key, 30_000)
  const won = await Promise.all([la.acquire(), lb.acquire()])
  assert.deepEqual(won.filter(Boolean).length, 1, 'exactly one holder takes the lease')
  const [holder, other] = won[0] === true ? [la, lb] : [lb, la]
  assert.equal(await a.get(key), holder.token)
  assert.equal(await other.renew(), false)
  assert.equal(await other.release(), false)
  assert.equal(await a.get(key), holder.token, 'a non-holder cannot take the lease away')
  assert.equal(await holder.acquire(), true, 'the holder acquiring again keeps it')
  assert.equal(await holder.release(), true)
  assert.equal(await other.acquire(), true, 'released, the lease goes to the next one asking')
})

test('leased work runs on one replica only, and another takes over when the holder is killed', async (t) => {
  const svc = await services()
  const redis = createRedis(svc.redisUrl, log, 'lease-test')
  const key = keys(uniqueNamespace()).lease('sweep')
  const ttlMs = 1500
  // The first holder is a process of its own, so that it can be killed (SIGKILL: no release, no goodbye).
  const leases = new URL('../../src/store/index.js', import.meta.url).href
  const logging = new URL('../../src/logging/index.js', import.meta.url).href
  const script = `
    const { createRedis, runLeased } = await import(${JSON.stringify(leases)})
    const { createLogger } = await import(${JSON.stringify(logging)})
    const log = createLogger({ name: 'holder', level: 'silent' })
    const r = createRedis(${JSON.stringify(svc.redisUrl)}, log, 'lease-holder')
    runLeased(r, ${JSON.stringify(key)}, 100, async () => { process.stdout.write('ran\\n') }, log, { ttlMs: ${ttlMs}, onChange: h => process.stdout.write(h ? 'holding\\n' : 'lost\\n') })
    setInterval(() => {}, 1000)`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  t.after(async () => { child.kill('SIGKILL'); await exited; await redis.del(key); redis.disconnect() })
  let childRuns = 0
  let childHolding = false
  createInterface({ input: child.stdout }).on('line', l => {
    if (l === 'ran') childRuns++
    if (l === 'holding') childHolding = true
  })
  await waitFor(() => childHolding, 30_000, 'the first replica to take the lease')

  let runs = 0
  const second = runLeased(redis, key, 100, async () => { runs++ }, log, { ttlMs })
  t.after(async () => await second.stop())
  // The holder keeps working while the second replica keeps asking: the second runs nothing meanwhile.
  const seen = childRuns
  await waitFor(() => childRuns >= seen + 10, 30_000, 'the holder to run its work ten more times')
  assert.equal(runs, 0, 'the replica without the lease ran the work')
  assert.equal(second.holding, false)

  child.kill('SIGKILL')
  await exited
  const afterKill = childRuns
  await waitFor(() => runs >= 3, 30_000, 'the second replica to take over the work')
  assert.equal(second.holding, true)
  assert.equal(childRuns, afterKill)
  assert.equal(await redis.get(key) !== null, true)

  await second.stop()
  assert.equal(await redis.get(key), null, 'a replica that stops releases the lease at once')
})
