import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { Job } from '@porthole/contracts'
import { createLogger } from '@porthole/shared/logging'
import { JobStore, keys } from '@porthole/shared/store'
import { dropNamespace, services, uniqueNamespace, waitFor } from '@porthole/testkit'
import { JobWaiter } from '../src/waiter.js'

async function setup (t: { after: (fn: () => Promise<void>) => void }): Promise<{ jobs: JobStore, redis: Redis, waiter: JobWaiter, ns: string }> {
  const svc = await services()
  const ns = uniqueNamespace()
  const redis = new Redis(svc.redisUrl)
  const sub = new Redis(svc.redisUrl)
  const jobs = new JobStore(redis, ns)
  const waiter = new JobWaiter(sub, jobs, createLogger({ name: 'test', level: 'silent' }))
  t.after(async () => { await waiter.close(); sub.disconnect(); redis.disconnect(); await dropNamespace(ns, svc) })
  await waiter.start()
  return { jobs, redis, waiter, ns }
}

const newJob = (): Job => ({
  id: randomUUID(), kind: 'status', serverId: randomUUID(), tenantId: randomUUID(), requestedBy: 'k',
  createdAt: new Date().toISOString(), deadline: new Date(Date.now() + 60_000).toISOString(), attempt: 1, traceId: 't'
})

test('a watched job that ends before anyone waits is answered from its end event, without reading the job', async (t) => {
  const { jobs, redis, waiter, ns } = await setup(t)
  const job = newJob()
  await jobs.create(job)
  const watch = waiter.watch(job.id)
  let stop = (): void => {}
  const ended = new Promise<void>(resolve => { void waiter.feed(e => { if (e.jobId === job.id && e.state === 'succeeded') { stop(); resolve() } }).then(s => { stop = s }) })
  await waitFor(async () => (await redis.pubsub('NUMSUB', keys(ns).jobEvents))[1] === 1, 10_000, 'the feed\'s subscription')
  await jobs.transition(job.id, 'succeeded', { result: { power: 'on', checkedAt: new Date().toISOString() } })
  await ended
  // Gone from Redis: only the event it heard can answer now.
  await redis.del(keys(ns).job(job.id))
  const rec = await watch.wait(30_000)
  assert.equal(rec?.state, 'succeeded')
  assert.equal(rec?.id, job.id)
})

test('a watch that times out answers with the job as Redis has it, and stops listening', async (t) => {
  const { jobs, waiter } = await setup(t)
  const job = newJob()
  await jobs.create(job)
  const rec = await waiter.watch(job.id).wait(50)
  assert.equal(rec?.state, 'queued')
  // The waiter holds nothing for the job once its watch ended: a later end reaches no one (and leaks nothing).
  const second = waiter.watch(job.id)
  second.close()
  await jobs.transition(job.id, 'failed', { error: { code: 'internal', message: 'x', retryable: false } })
  await waitFor(async () => (await jobs.get(job.id))?.state === 'failed', 10_000, 'the job to fail')
  assert.equal((waiter as unknown as { byJob: Map<string, unknown> }).byJob.has(job.id), false)
})

test('a replica listens to job ends only until a feed follows every event; the last feed\'s stop ends that', async (t) => {
  const { jobs, redis, waiter, ns } = await setup(t)
  const subscribers = async (channel: string): Promise<number> => Number((await redis.pubsub('NUMSUB', channel))[1])
  assert.equal(await subscribers(keys(ns).jobEnds), 1)
  assert.equal(await subscribers(keys(ns).jobEvents), 0, 'nobody follows every event: not subscribed to them')
  const a: string[] = []
  const b: string[] = []
  const stopA = await waiter.feed(e => a.push(e.state))
  const stopB = await waiter.feed(e => b.push(e.state))
  assert.equal(await subscribers(keys(ns).jobEvents), 1)
  const job = newJob()
  await jobs.create(job)
  await jobs.transition(job.id, 'dispatched')
  await jobs.transition(job.id, 'succeeded', { result: { power: 'on', checkedAt: new Date().toISOString() } })
  await waitFor(() => a.length >= 3 && b.length >= 3, 10_000, 'both feeds to hear the job')
  assert.deepEqual(a, ['queued', 'dispatched', 'succeeded'], 'each event once, the end too (it is on both channels)')
  assert.deepEqual(b, a)
  stopA()
  assert.equal(await subscribers(keys(ns).jobEvents), 1, 'one feed left')
  stopB()
  await waitFor(async () => await subscribers(keys(ns).jobEvents) === 0, 10_000, 'the last feed to unsubscribe')
  // A waiter still hears ends.
  const next = newJob()
  await jobs.create(next)
  const watch = waiter.watch(next.id)
  await jobs.transition(next.id, 'failed', { error: { code: 'action', message: 'x', retryable: false } })
  assert.equal((await watch.wait(30_000))?.state, 'failed')
  assert.deepEqual(a, ['queued', 'dispatched', 'succeeded'], 'a stopped feed hears nothing more')
})
