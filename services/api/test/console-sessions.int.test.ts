import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { SecretBox, randomToken, sha256Hex } from '@porthole/shared/crypto'
import type { ConsoleSession } from '@porthole/contracts'
import { ConsoleSessionStore, createRedis, parseSessionEvent } from '@porthole/shared/store'
import { createLogger } from '@porthole/shared/logging'
import { waitFor } from '@porthole/testkit'
import { startTestApi, type TestApi, twoTenants } from './helpers.js'

/** A session as the gateway would store it. */
async function session (api: TestApi, store: ConsoleSessionStore, tenantId: string, serverId: string): Promise<ConsoleSession> {
  const box = new SecretBox('g1', new Map([['g1', randomBytes(32)]]))
  const id = crypto.randomUUID()
  const s: ConsoleSession = {
    id, serverId, tenantId, serverName: 'vm', jobId: crypto.randomUUID(), protocol: 'vnc',
    target: box.seal({ kind: 'vnc', host: '127.0.0.1', port: 5900, password: 'vncpass' }, id),
    tokenHash: sha256Hex(randomToken()), createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 600_000).toISOString(), singleUse: false
  }
  await store.create(s)
  return s
}

test('console sessions: customers list and revoke their own; revocation is published for the gateway', async (t) => {
  const api = await startTestApi(t)
  const store = new ConsoleSessionStore(api.redis, api.ns)
  const { a, b, sa, sb } = await twoTenants(api)
  const mine = await session(api, store, a.tenantId, sa)
  const theirs = await session(api, store, b.tenantId, sb)
  await store.takeViewer(mine, 'viewer-1')

  const list = await api.call('GET', '/v1/console-sessions', undefined, { key: a.key })
  assert.equal(list.status, 200)
  assert.deepEqual(list.body, [{ id: mine.id, serverId: sa, tenantId: a.tenantId, protocol: 'vnc', createdAt: mine.createdAt, expiresAt: mine.expiresAt, singleUse: false, connected: true }])
  assert.ok(!list.raw.includes('vncpass') && !list.raw.includes(mine.tokenHash), 'no target, no token hash')
  assert.equal((await api.call('GET', '/v1/console-sessions')).body.length, 2)
  assert.equal((await api.call('GET', `/v1/console-sessions?serverId=${sb}`)).body[0].id, theirs.id)
  assert.equal((await api.call('GET', `/v1/console-sessions/${theirs.id}`, undefined, { key: a.key })).status, 404)
  assert.equal((await api.call('DELETE', `/v1/console-sessions/${theirs.id}`, undefined, { key: a.key })).status, 404)
  assert.equal((await store.get(theirs.id))?.revokedAt, undefined)

  const sub = createRedis(api.svc.redisUrl, createLogger({ name: 'test', level: 'silent' }), 'test-sub')
  t.after(() => { sub.disconnect() })
  const events: unknown[] = []
  sub.on('message', (_c: string, m: string) => events.push(parseSessionEvent(m)))
  await sub.subscribe(store.eventsChannel)

  assert.equal((await api.call('DELETE', `/v1/console-sessions/${mine.id}`, undefined, { key: a.key })).status, 204)
  await waitFor(() => events.length === 1, 3000, 'the revocation event')
  assert.deepEqual(events[0], { type: 'revoked', sessionId: mine.id })
  const after = await api.call('GET', `/v1/console-sessions/${mine.id}`, undefined, { key: a.key })
  assert.ok(after.body.revokedAt)
  assert.equal(await store.findByTokenHash(mine.tokenHash), undefined, 'the token no longer opens it')
  assert.equal((await api.call('DELETE', `/v1/console-sessions/${mine.id}`, undefined, { key: a.key })).status, 204, 'revoking again is harmless')
  assert.equal((await api.call('DELETE', `/v1/console-sessions/${crypto.randomUUID()}`)).status, 404)
})
