import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { JobEvent, JobRecord, compile, type Job } from '@porthole/contracts'
import { JOB_RETENTION_SECONDS, JobStore, keys, parseJobEvent } from '../../src/store/index.js'
import { dropNamespace, services, uniqueNamespace, waitFor } from '@porthole/testkit'

async function setup (t: { after: (fn: () => Promise<void>) => void }): Promise<{ store: JobStore, redis: Redis, ns: string }> {
  const svc = await services()
  const ns = uniqueNamespace()
  const redis = new Redis(svc.redisUrl)
  t.after(async () => { redis.disconnect(); await dropNamespace(ns, svc) })
  return { store: new JobStore(redis, ns), redis, ns }
}

const newJob = (o: Record<string, unknown> = {}): Job => ({
  id: randomUUID(), kind: 'power', serverId: randomUUID(), tenantId: randomUUID(), action: 'on', requestedBy: 'k',
  createdAt: new Date().toISOString(), deadline: new Date(Date.now() + 60_000).toISOString(), attempt: 1, traceId: 't', ...o
}) as Job

test('a job moves forward through its states with a timestamp each, and never leaves a terminal state', async (t) => {
  const { store } = await setup(t)
  const j = newJob()
  assert.deepEqual(await store.create(j), { created: true, id: j.id })
  assert.equal((await store.transition(j.id, 'dispatched')).status, 'ok')
  assert.equal((await store.transition(j.id, 'dispatched')).status, 'same')
  assert.equal((await store.transition(j.id, 'running')).status, 'ok')
  assert.equal((await store.transition(j.id, 'queued')).status, 'stale')
  const result = { power: 'on' as const, checkedAt: new Date().toISOString(), changed: true }
  assert.equal((await store.transition(j.id, 'succeeded', { result })).status, 'ok')
  assert.deepEqual(await store.transition(j.id, 'timed_out'), { status: 'stale', state: 'succeeded' })
  const rec = await store.get(j.id)
  assert.equal(rec?.state, 'succeeded')
  assert.deepEqual(rec?.history.map(h => h.state), ['queued', 'dispatched', 'running', 'succeeded'])
  assert.ok(rec?.history.every(h => !Number.isNaN(Date.parse(h.at))))
  assert.deepEqual(rec?.result, result)
  assert.equal((await store.transition(randomUUID(), 'running')).status, 'missing')
})

test('an end that says when the job started records running then, first, with its event, in the same step', async (t) => {
  const { store, redis, ns } = await setup(t)
  const sub = new Redis((await services()).redisUrl)
  t.after(() => { sub.disconnect() })
  const heard: Array<[string, string]> = []
  await sub.subscribe(store.eventsChannel)
  sub.on('message', (_c: string, m: string) => { const e = parseJobEvent(m); if (e !== undefined) heard.push([e.jobId, e.state]) })
  const status = newJob({ kind: 'status', action: undefined })
  const power = newJob()
  for (const j of [status, power]) await store.create(j)
  await store.transition(status.id, 'dispatched', { at: new Date(Date.parse(status.createdAt) + 1) })
  const startedAt = new Date(Date.parse(status.createdAt) + 2)
  const at = new Date(Date.parse(status.createdAt) + 3)
  const result = { power: 'on' as const, checkedAt: at.toISOString() }
  assert.equal((await store.transition(status.id, 'succeeded', { result, at, startedAt })).status, 'ok')
  const rec = await store.get(status.id)
  assert.deepEqual(rec?.history.map(h => [h.state, h.at]), [
    ['queued', status.createdAt], ['dispatched', new Date(Date.parse(status.createdAt) + 1).toISOString()], ['running', startedAt.toISOString()], ['succeeded', at.toISOString()]
  ])
  // A job already running keeps its own start: the one an end reports is not added again.
  await store.transition(power.id, 'running')
  await store.transition(power.id, 'failed', { error: { code: 'action', message: 'x', retryable: false }, startedAt })
  assert.deepEqual((await store.get(power.id))?.history.map(h => h.state), ['queued', 'running', 'failed'])
  // A stale end adds nothing either.
  assert.equal((await store.transition(status.id, 'failed', { error: { code: 'action', message: 'x', retryable: false }, startedAt })).status, 'stale')
  assert.equal((await store.get(status.id))?.history.length, 4)

  // The event stream and the channel tell each change once, in order.
  const stream = (await redis.xrange(keys(ns).eventStream, '-', '+')).map(([, f]) => JSON.parse(f[f.indexOf('data') + 1] as string) as { jobId: string, state: string, at: string })
  assert.deepEqual(stream.filter(e => e.jobId === status.id).map(e => [e.state, e.at]), rec?.history.map(h => [h.state, h.at]))
  await waitFor(() => heard.filter(([id]) => id === status.id).length >= 4, 10_000, 'the status job\'s four events')
  assert.deepEqual(heard.filter(([id]) => id === status.id).map(([, s]) => s), ['queued', 'dispatched', 'running', 'succeeded'])
})

test('a change limited to some kinds applies only to a job of one of them: another kind is named, the job unchanged', async (t) => {
  const { store } = await setup(t)
  const j = newJob()
  await store.create(j)
  const console = { sessionId: randomUUID(), protocol: 'vnc' as const, expiresAt: new Date().toISOString() }
  assert.deepEqual(await store.transition(j.id, 'succeeded', { result: console, kinds: ['console'] }), { status: 'kind', state: '', kind: 'power' })
  assert.equal((await store.get(j.id))?.state, 'queued')
  const power = { power: 'on' as const, checkedAt: new Date().toISOString() }
  assert.equal((await store.transition(j.id, 'succeeded', { result: power, kinds: ['power', 'status'] })).status, 'ok')
  assert.deepEqual((await store.get(j.id))?.result, power)
})

test('concurrent terminal writers: exactly one wins', async (t) => {
  const { store } = await setup(t)
  const j = newJob()
  await store.create(j)
  const r = await Promise.all([
    store.transition(j.id, 'succeeded', { result: { power: 'off', checkedAt: new Date().toISOString() } }),
    store.transition(j.id, 'timed_out', { error: { code: 'timeout', message: 'late', retryable: true } }),
    store.transition(j.id, 'failed', { error: { code: 'action', message: 'no', retryable: false } })
  ])
  assert.equal(r.filter(x => x.status === 'ok').length, 1)
  const rec = await store.get(j.id)
  assert.equal(rec?.history.length, 2)
})

test('an idempotency key returns the first job', async (t) => {
  const { store } = await setup(t)
  const a = newJob(); const b = newJob()
  const idem = { scope: 'key-1', key: 'abc', ttlSeconds: 60 }
  assert.deepEqual(await store.create(a, idem), { created: true, id: a.id })
  assert.deepEqual(await store.create(b, idem), { created: false, id: a.id })
  assert.equal(await store.get(b.id), undefined)
  assert.deepEqual(await store.create(b, { ...idem, scope: 'key-2' }), { created: true, id: b.id })
})

test('overdue lists unfinished jobs past their deadline only, and listing filters', async (t) => {
  const { store } = await setup(t)
  const serverId = randomUUID()
  const late = newJob({ serverId, deadline: new Date(Date.now() - 1).toISOString() })
  const done = newJob({ serverId, deadline: new Date(Date.now() - 1).toISOString(), kind: 'status', action: undefined })
  const fresh = newJob({ serverId })
  for (const j of [late, done, fresh]) await store.create(j)
  await store.transition(done.id, 'succeeded', { result: { power: 'on', checkedAt: new Date().toISOString() } })
  assert.deepEqual(await store.overdue(Date.now()), [late.id])
  assert.deepEqual((await store.list({ serverId })).map(j => j.id).sort(), [late.id, done.id, fresh.id].sort())
  assert.deepEqual((await store.list({ serverId, state: 'succeeded' })).map(j => j.id), [done.id])
  assert.deepEqual((await store.list({ serverId, kind: 'status' })).map(j => j.id), [done.id])
})

test('every change is published on the events channel', async (t) => {
  const { store } = await setup(t)
  const svc = await services()
  const sub = new Redis(svc.redisUrl)
  t.after(() => { sub.disconnect() })
  const seen: string[] = []
  await sub.subscribe(store.eventsChannel)
  const records: unknown[] = []
  const ends: string[] = []
  await sub.subscribe(store.endsChannel)
  sub.on('message', (c: string, m: string) => {
    const e = parseJobEvent(m)
    if (e === undefined) return
    if (c === store.endsChannel) { ends.push(e.state); return }
    seen.push(e.state); records.push(e.record)
  })
  const j = newJob()
  await store.create(j)
  await store.transition(j.id, 'dispatched')
  await store.transition(j.id, 'failed', { error: { code: 'action', message: 'x', retryable: false } })
  await waitFor(() => seen.length >= 3 && ends.length >= 1, 10_000, 'three job events and one end')
  assert.deepEqual(seen, ['queued', 'dispatched', 'failed'])
  // The ends channel tells of the end only (what waiters listen to).
  assert.deepEqual(ends, ['failed'])
  // Only the terminal event carries the record, and it is the stored one (a waiter need not read it again).
  assert.deepEqual(records, [undefined, undefined, await store.get(j.id)])
})

test('every event the scripts publish is a JobEvent by its schema, and a terminal one also a valid JobRecord', async (t) => {
  const { store } = await setup(t)
  const sub = new Redis((await services()).redisUrl)
  t.after(() => { sub.disconnect() })
  const raw: string[] = []
  await sub.subscribe(store.eventsChannel)
  sub.on('message', (_c: string, m: string) => { raw.push(m) })
  // Every kind, and every path of the scripts: create, a forward step, each terminal state, a result and an error.
  const power = newJob()
  const status = newJob({ kind: 'status', action: undefined })
  const console = newJob({ kind: 'console', action: undefined, console: { protocol: 'vnc', ttlSeconds: 60, singleUse: false } })
  for (const j of [power, status, console]) await store.create(j)
  await store.transition(power.id, 'running')
  await store.transition(power.id, 'succeeded', { result: { power: 'on', checkedAt: new Date().toISOString(), changed: true } })
  await store.transition(status.id, 'timed_out', { error: { code: 'timeout', message: 'late', retryable: true } })
  await store.transition(console.id, 'failed', { error: { code: 'conflict', message: 'off', retryable: false } })
  await waitFor(() => raw.length >= 7, 10_000, 'seven job events')
  const checkEvent = compile(JobEvent, 'job event')
  const checkRecord = compile(JobRecord, 'job record')
  for (const m of raw) {
    const { record, ...event } = JSON.parse(m) as Record<string, unknown>
    assert.doesNotThrow(() => checkEvent.parse(event), m)
    if (record !== undefined) assert.doesNotThrow(() => checkRecord.parse(record), m)
  }
  assert.equal(raw.filter(m => m.includes('"record"')).length, 3, 'one record per terminal event')
})

test('creating a job drops index entries older than the retention from all three indexes', async (t) => {
  const { store, redis, ns } = await setup(t)
  const k = keys(ns)
  const serverId = randomUUID()
  const tenantId = randomUUID()
  const longAgo = Date.now() - (JOB_RETENTION_SECONDS + 3600) * 1000
  const old = newJob({ serverId, tenantId, createdAt: new Date(longAgo).toISOString(), deadline: new Date(longAgo + 60_000).toISOString() })
  await store.create(old)
  const recent = newJob({ serverId, tenantId, createdAt: new Date(Date.now() - 2 * 3600_000).toISOString() })
  await store.create(recent)
  const indexes = [k.jobsAll, k.jobsByServer(serverId), k.jobsByTenant(tenantId)]
  // The older job was the newest when it was created, so it is still there; a new job trims it.
  for (const ix of indexes) assert.notEqual(await redis.zscore(ix, old.id), null, `${ix} before`)
  const j = newJob({ serverId, tenantId })
  await store.create(j)
  for (const ix of indexes) {
    assert.equal(await redis.zscore(ix, old.id), null, `${ix} still holds the expired job`)
    assert.notEqual(await redis.zscore(ix, recent.id), null, `${ix} lost a job within the retention`)
    assert.notEqual(await redis.zscore(ix, j.id), null, `${ix} lacks the new job`)
  }
})
