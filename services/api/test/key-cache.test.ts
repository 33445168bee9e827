import { test } from 'node:test'
import assert from 'node:assert/strict'
import { KeyCache } from '../src/key-cache.js'
import { OverLimit } from '../src/request-limit.js'

const alice = { id: 'k1', role: 'customer' as const, tenantId: 't1' }

test('a lookup that began before a revocation does not put the key back after it', () => {
  const c = new KeyCache(60_000)
  c.live(true)
  const before = c.generation()
  c.forget({ type: 'api-key.revoked', apiKeyId: 'k1' })
  c.put('h1', alice, before)
  assert.equal(c.get('h1'), undefined)
  c.put('h1', alice, c.generation())
  assert.deepEqual(c.get('h1'), alice)
})

test('entries end with their TTL, with a revocation of their key or tenant, and while not live', () => {
  const c = new KeyCache(1000)
  c.put('h1', alice, c.generation(), 0)
  assert.equal(c.get('h1', 1), undefined, 'nothing kept before the subscription is up')
  c.live(true)
  c.put('h1', alice, c.generation(), 0)
  assert.deepEqual(c.get('h1', 999), alice)
  assert.equal(c.get('h1', 1000), undefined)
  c.put('h1', alice, c.generation())
  c.onMessage(JSON.stringify({ type: 'tenant.suspended', tenantId: 't1' }))
  assert.equal(c.get('h1'), undefined)
  c.put('h1', alice, c.generation())
  c.onMessage(JSON.stringify({ type: 'station.revoked', stationId: 's1' }))
  assert.equal(c.get('h1'), undefined, 'an access event of an unknown kind empties it')
  c.put('h1', alice, c.generation())
  c.live(false)
  c.live(true)
  assert.equal(c.get('h1'), undefined, 'emptied when the subscription dropped')
  assert.equal(new KeyCache(0).size, 0)
})

test('what the cache hands out is a copy: a caller cannot change the next request\'s principal', () => {
  const c = new KeyCache(60_000)
  c.live(true)
  c.put('h1', { ...alice }, c.generation())
  const p = c.get('h1')
  assert.ok(p !== undefined)
  p.role = 'admin'
  assert.equal(c.get('h1')?.role, 'customer')
})

test('a key known over its limit is known so until the window Redis named ends, no longer', () => {
  const o = new OverLimit(0)
  o.mark('k1', 2000, 1000)
  assert.equal(o.left('k1', 1500), 1500)
  assert.equal(o.left('k1', 3000), undefined)
  assert.equal(o.left('k2', 1500), undefined)
})
