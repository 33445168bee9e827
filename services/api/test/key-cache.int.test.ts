import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sha256Hex } from '@porthole/shared/crypto'
import { keys } from '@porthole/shared/store'
import { waitFor } from '@porthole/testkit'
import { assertLimited, secondReplica, startTestApi, tenantWithKey, type TestApi } from './helpers.js'

/** Hides a key's record from Redis (as if it were gone) and puts it back: shows whether a replica still reads it. */
async function hidden<T> (api: TestApi, key: string, fn: () => Promise<T>): Promise<T> {
  const k = keys(api.ns).apiKey(sha256Hex(key))
  await api.redis.rename(k, `${k}:hidden`)
  try { return await fn() } finally { await api.redis.rename(`${k}:hidden`, k) }
}

test('a cached key: served from memory, yet a deletion refuses it at once on this replica and on another, a suspension too', async (t) => {
  const api = await startTestApi(t, { env: { KEY_CACHE_SECONDS: '300' } })
  const other = await secondReplica(api)
  const a = await tenantWithKey(api, 'kc')
  const b = await tenantWithKey(api, 'kc2')
  for (const call of [api.call, other.call]) {
    assert.equal((await call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
    assert.equal((await call('GET', '/v1/servers', undefined, { key: b.key })).status, 200)
  }
  // The cache is what answers: with the record out of Redis both replicas still know the key.
  await hidden(api, a.key, async () => {
    assert.equal((await api.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
    assert.equal((await other.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
  })
  assert.equal((await api.call('DELETE', `/v1/api-keys/${a.keyId}`)).status, 204)
  // On the replica that deleted it, before the deletion answered; on the other, with the access event.
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: a.key })).status, 401)
  await waitFor(async () => (await other.call('GET', '/v1/servers', undefined, { key: a.key })).status === 401, 10_000, 'the other replica refuses the deleted key')
  // A suspension, through the other replica this time.
  assert.equal((await other.call('POST', `/v1/tenants/${b.tenantId}/suspend`)).status, 200)
  assert.equal((await other.call('GET', '/v1/servers', undefined, { key: b.key })).status, 403)
  await waitFor(async () => (await api.call('GET', '/v1/servers', undefined, { key: b.key })).status === 403, 10_000, 'the first replica refuses the suspended tenant\'s key')
  assert.equal((await api.call('POST', `/v1/tenants/${b.tenantId}/resume`)).status, 200)
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: b.key })).status, 200)
})

test('while its subscription to the access events is down, a replica keeps no key: each request reads Redis', async (t) => {
  const api = await startTestApi(t, { env: { KEY_CACHE_SECONDS: '300' } })
  const other = await secondReplica(api)
  const a = await tenantWithKey(api, 'kd')
  assert.equal((await other.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
  await hidden(api, a.key, async () => { assert.equal((await other.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200) })
  // A revocation published now would not reach it: the cache is emptied and stays off.
  const closed = new Promise(resolve => other.deps.subscriber.once('close', resolve))
  other.deps.subscriber.disconnect(true) // and reconnect
  await closed
  await hidden(api, a.key, async () => { assert.equal((await other.call('GET', '/v1/servers', undefined, { key: a.key })).status, 401) })
  // Once subscribed again, it caches again.
  await waitFor(async () => {
    assert.equal((await other.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
    return await hidden(api, a.key, async () => (await other.call('GET', '/v1/servers', undefined, { key: a.key })).status === 200)
  }, 10_000, 'the key cached again after the subscription is back')
})

test('over its request limit, a key is refused from the replica\'s own view, with the same answer', async (t) => {
  const api = await startTestApi(t, { env: { RATE_LIMIT_CUSTOMER: '3', RATE_LIMIT_WINDOW_SECONDS: '60', RATE_LIMIT_REFUSAL_DELAY_MS: '0', KEY_CACHE_SECONDS: '300' } })
  const other = await secondReplica(api)
  const a = await tenantWithKey(api, 'ko')
  const counter = `${keys(api.ns).requestRate}${a.keyId}`
  // Counted in Redis across both replicas: the fourth request of the window is refused by the shared count.
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
  assert.equal((await other.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
  const byRedis = await api.call('GET', '/v1/servers', undefined, { key: a.key })
  assertLimited(byRedis, 'requests_per_key', 60)
  // Now this replica answers from what it knows: with the count gone from Redis it still refuses, the other
  // (which never saw a refusal) asks Redis and admits; the two refusals look alike.
  await api.redis.del(counter)
  const local = await api.call('GET', '/v1/servers', undefined, { key: a.key })
  assertLimited(local, 'requests_per_key', 60)
  assert.equal(await api.redis.exists(counter), 0, 'the local refusal did not touch Redis')
  for (const h of ['x-ratelimit-limit', 'x-ratelimit-remaining']) assert.equal(local.headers[h], byRedis.headers[h], h)
  assert.ok(Number(local.headers['x-ratelimit-reset']) >= 1)
  assert.deepEqual(Object.keys(local.body).sort(), Object.keys(byRedis.body).sort())
  assert.equal(local.body.detail.replace(/\d+ s$/, ''), byRedis.body.detail.replace(/\d+ s$/, ''))
  assert.equal((await other.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
  const metrics = await api.app.inject({ method: 'GET', url: '/metrics' })
  assert.match(metrics.body, /porthole_limit_refusals_total\{limit="requests_per_key"\} 2\n/)
})

test('a further request of a key over its limit is held, and served if its window ends meanwhile', async (t) => {
  // The delay is longer than the window: the held request outlives the window and is then counted afresh.
  const api = await startTestApi(t, { env: { RATE_LIMIT_CUSTOMER: '1', RATE_LIMIT_WINDOW_SECONDS: '5', RATE_LIMIT_REFUSAL_DELAY_MS: '10000', KEY_CACHE_SECONDS: '300' } })
  const a = await tenantWithKey(api, 'kh')
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
  assertLimited(await api.call('GET', '/v1/servers', undefined, { key: a.key }), 'requests_per_key', 5)
  assert.equal((await api.call('GET', '/v1/servers', undefined, { key: a.key })).status, 200)
  assert.equal(await api.redis.get(`${keys(api.ns).requestRate}${a.keyId}`), '1', 'counted in the new window')
})
