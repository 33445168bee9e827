import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { ConsoleSession } from '@porthole/contracts'
import { ConsoleSessionStore, keys, parseStreamEntry } from '../../src/store/index.js'
import { dropNamespace, services, uniqueNamespace } from '@porthole/testkit'

async function setup (t: { after: (fn: () => Promise<void>) => void }): Promise<{ store: ConsoleSessionStore, redis: Redis, k: ReturnType<typeof keys> }> {
  const svc = await services()
  const ns = uniqueNamespace()
  const redis = new Redis(svc.redisUrl)
  t.after(async () => { redis.disconnect(); await dropNamespace(ns, svc) })
  return { store: new ConsoleSessionStore(redis, ns), redis, k: keys(ns) }
}

function session (ttlSeconds: number): ConsoleSession {
  const now = Date.now()
  return {
    id: randomUUID(), serverId: randomUUID(), tenantId: randomUUID(), serverName: 'vm', jobId: randomUUID(), protocol: 'vnc',
    target: { v: 1, kid: 'k', iv: 'aXY', tag: 'dGFn', data: 'ZGF0YQ' } as unknown as ConsoleSession['target'],
    tokenHash: 'a'.repeat(64), createdAt: new Date(now).toISOString(), expiresAt: new Date(now + ttlSeconds * 1000).toISOString(),
    singleUse: false, ttlSeconds, maxExpiresAt: new Date(now + ttlSeconds * 1000).toISOString()
  }
}

test('a new session with its URL hand-over is stored in one step: record, token, indexes, slots taken over from its job, event, hand-over', async (t) => {
  const { store, redis, k } = await setup(t)
  const s = session(600)
  const exp = Date.parse(s.expiresAt)
  // The job's console slots, as the API's admission took them.
  assert.equal((await store.admit({ serverId: s.serverId, tenantId: s.tenantId, jobId: s.jobId, deadlineMs: Date.now() + 30_000, perServer: 5, perTenant: 5 })).admitted, true)
  assert.deepEqual(await redis.zrange(k.consoleSlotsOfServer(s.serverId), 0, -1), [`job:${s.jobId}`])
  const sealedUrl = { v: 1, kid: 'k', iv: 'dXJs', tag: 'dGFn', data: 'dXJs' } as unknown as ConsoleSession['target']
  await store.create(s, { jobId: s.jobId, sealedUrl, ttlSeconds: 120 })

  assert.deepEqual(await store.get(s.id), s)
  assert.deepEqual(await store.findByTokenHash(s.tokenHash), s)
  const ttl = await redis.ttl(k.session(s.id))
  assert.ok(ttl > 600 && ttl <= 600 + 600, `the record outlives the session by the grace: ${ttl}`)
  const tokenTtl = await redis.ttl(k.sessionByToken(s.tokenHash))
  assert.ok(tokenTtl > 590 && tokenTtl <= 600, `the token lives as long as the session: ${tokenTtl}`)
  for (const index of [k.sessions, k.sessionsExpiring]) assert.equal(Number(await redis.zscore(index, s.id)), exp)
  for (const slots of [k.consoleSlotsOfServer(s.serverId), k.consoleSlotsOfTenant(s.tenantId)]) {
    assert.deepEqual(await redis.zrange(slots, 0, -1, 'WITHSCORES'), [s.id, String(exp)], 'the session holds the slot in place of its job')
    assert.ok(await redis.ttl(slots) > 0)
  }
  assert.deepEqual(await store.takeUrlHandover(s.jobId), sealedUrl)
  assert.equal(await store.takeUrlHandover(s.jobId), undefined, 'taken once')
  const events = (await redis.xrange(k.eventStream, '-', '+')).map(parseStreamEntry)
  assert.deepEqual(events.map(e => e?.type === 'console' ? [e.data.sessionId, e.data.event, e.data.at] : undefined), [[s.id, 'opened', s.createdAt]])
})

test('a session without a hand-over leaves other members of its slots alone', async (t) => {
  const { store, redis, k } = await setup(t)
  const s = session(60)
  assert.equal((await store.admit({ serverId: s.serverId, tenantId: s.tenantId, jobId: s.jobId, deadlineMs: Date.now() + 30_000, perServer: 5, perTenant: 5 })).admitted, true)
  await store.create(s)
  assert.deepEqual((await redis.zrange(k.consoleSlotsOfServer(s.serverId), 0, -1)).sort(), [`job:${s.jobId}`, s.id].sort())
  assert.equal(await redis.exists(k.consoleUrlHandover(s.jobId)), 0)
  assert.deepEqual(await store.get(s.id), s)
})
