import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { ServerSecrets, StoredServer } from '@porthole/contracts'
import { SecretBox, openServerSecrets, sealServerSecrets } from '../../src/crypto/index.js'
import { ServerStore } from '../../src/store/index.js'
import { dropNamespace, services, testSecretKey, uniqueNamespace } from '@porthole/testkit'

const boxOf = (key: string, kid: string, old = ''): SecretBox => SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: key, PORTHOLE_SECRET_KEY_ID: kid, PORTHOLE_OLD_SECRET_KEYS: old })

function server (box: SecretBox, password: string, form: 'bound' | 'earlier' = 'bound'): StoredServer {
  const id = randomUUID()
  const secrets: ServerSecrets = { connection: { password }, console: { password: `${password}-vnc` } }
  const s: StoredServer = {
    id,
    tenantId: randomUUID(),
    name: `srv-${id.slice(0, 8)}`,
    agent: 'ipmi',
    connection: { host: '192.0.2.10', username: 'admin' },
    console: { host: '192.0.2.10', port: 5901 },
    secretPaths: ['connection.password', 'console.password'],
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString()
  }
  if (form === 'earlier') s.secrets = box.seal(secrets, id) // before destination binding: one box, aad = id
  else s.sealed = sealServerSecrets(box, s, secrets)
  return s
}

test('after a key rotation, server credentials under the old key are re-sealed with the new one', async (t) => {
  const svc = await services()
  const ns = uniqueNamespace()
  const redis = new Redis(svc.redisUrl)
  t.after(async () => { redis.disconnect(); await dropNamespace(ns, svc) })
  const store = new ServerStore(redis, ns)
  const [k1, k2, lost] = [testSecretKey(), testSecretKey(), testSecretKey()]
  const old = server(boxOf(k1, 'k1'), 'bmc-pass-1')
  const current = server(boxOf(k2, 'k2'), 'bmc-pass-2')
  const orphan = server(boxOf(lost, 'k0'), 'bmc-pass-0')
  for (const s of [old, current, orphan]) await store.put(s)

  const after = boxOf(k2, 'k2', `k1:${k1}`)
  assert.deepEqual(await store.resealStale(after), { resealed: 1, upgraded: 0, left: 1, legacy: 0 })
  const got = await store.get(old.id) as StoredServer
  assert.equal(got.sealed?.connection?.kid, 'k2')
  assert.equal(got.sealed?.console?.kid, 'k2')
  // The new key alone opens it now, to the same passwords; nothing else in the record changed.
  assert.deepEqual(openServerSecrets(boxOf(k2, 'k2'), got), { connection: { password: 'bmc-pass-1' }, console: { password: 'bmc-pass-1-vnc' } })
  assert.deepEqual({ ...got, sealed: undefined }, { ...old, sealed: undefined })
  assert.deepEqual(await store.get(current.id), current, 'a record under the current key is left alone')
  assert.deepEqual(await store.get(orphan.id), orphan, 'a record under an unknown key is left as it is')
  assert.deepEqual(await store.resealStale(after), { resealed: 0, upgraded: 0, left: 1, legacy: 0 }, 'a second pass finds nothing more to do')
})

test('the re-seal pass upgrades records of the earlier form to boxes bound to their destination, only when told to', async (t) => {
  const svc = await services()
  const ns = uniqueNamespace()
  const redis = new Redis(svc.redisUrl)
  t.after(async () => { redis.disconnect(); await dropNamespace(ns, svc) })
  const store = new ServerStore(redis, ns)
  const [k1, k2] = [testSecretKey(), testSecretKey()]
  const box = boxOf(k2, 'k2', `k1:${k1}`)
  const legacy = server(boxOf(k1, 'k1'), 'bmc-pass-3', 'earlier') // and under an old key
  await store.put(legacy)
  assert.throws(() => openServerSecrets(box, legacy), /earlier form/, 'agents refuse the earlier form')

  // Not told to: the record is left as it is, counted, and still unusable (an old box written into Redis
  // later, from a backup, is never bound to the destination it comes with).
  assert.deepEqual(await store.resealStale(box), { resealed: 0, upgraded: 0, left: 0, legacy: 1 })
  assert.deepEqual(await store.get(legacy.id), legacy)
  assert.deepEqual(await store.resealStale(box, { upgradeLegacy: true }), { resealed: 0, upgraded: 1, left: 0, legacy: 0 })
  const got = await store.get(legacy.id) as StoredServer
  assert.equal(got.secrets, undefined)
  assert.equal(got.sealed?.connection?.kid, 'k2')
  assert.deepEqual(openServerSecrets(boxOf(k2, 'k2'), got), { connection: { password: 'bmc-pass-3' }, console: { password: 'bmc-pass-3-vnc' } })
  const { sealed: _s, ...gotRest } = got
  const { secrets: _l, ...legacyRest } = legacy
  assert.deepEqual(gotRest, legacyRest, 'nothing else in the record changed')
  // From now on a changed destination does not open: each field the password is sent to, each purpose.
  for (const [part, field, value] of [['connection', 'host', '198.51.100.7'], ['connection', 'port', 624], ['connection', 'username', 'root'], ['console', 'host', '198.51.100.7'], ['console', 'port', 5902]] as const) {
    const moved = { ...got, [part]: { ...got[part], [field]: value } }
    assert.throws(() => openServerSecrets(box, moved), (err: Error & { code?: string }) => err.code === 'auth' && err.message.includes(`${part} password`) && !err.message.includes('bmc-pass-3'), `${part}.${field}`)
  }
  assert.deepEqual(await store.resealStale(box, { upgradeLegacy: true }), { resealed: 0, upgraded: 0, left: 0, legacy: 0 })
})
