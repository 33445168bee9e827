import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { ServerSecrets, StoredServer } from '../../src/contracts/index.js'
import { SecretBox } from '../../src/crypto/index.js'
import { ServerStore } from '../../src/store/index.js'
import { dropNamespace, services, testSecretKey, uniqueNamespace } from '../../src/testing/index.js'

function server (box: SecretBox, password: string): StoredServer {
  const id = randomUUID()
  const secrets: ServerSecrets = { connection: { password } }
  return {
    id,
    tenantId: randomUUID(),
    name: `srv-${id.slice(0, 8)}`,
    agent: 'ipmi',
    connection: { host: '192.0.2.10', username: 'admin' },
    secrets: box.seal(secrets, id),
    secretPaths: ['connection.password'],
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString()
  }
}

test('after a key rotation, server credentials under the old key are re-sealed with the new one', async (t) => {
  const svc = await services()
  const ns = uniqueNamespace()
  const redis = new Redis(svc.redisUrl)
  t.after(async () => { redis.disconnect(); await dropNamespace(ns, svc) })
  const store = new ServerStore(redis, ns)
  const [k1, k2, lost] = [testSecretKey(), testSecretKey(), testSecretKey()]
  const before = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: k1, PORTHOLE_SECRET_KEY_ID: 'k1', PORTHOLE_OLD_SECRET_KEYS: '' })
  const old = server(before, 'bmc-pass-1')
  const current = server(SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: k2, PORTHOLE_SECRET_KEY_ID: 'k2', PORTHOLE_OLD_SECRET_KEYS: '' }), 'bmc-pass-2')
  const orphan = server(SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: lost, PORTHOLE_SECRET_KEY_ID: 'k0', PORTHOLE_OLD_SECRET_KEYS: '' }), 'bmc-pass-0')
  for (const s of [old, current, orphan]) await store.put(s)

  const after = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: k2, PORTHOLE_SECRET_KEY_ID: 'k2', PORTHOLE_OLD_SECRET_KEYS: `k1:${k1}` })
  assert.deepEqual(await store.resealStale(after), { resealed: 1, left: 1 })
  const got = await store.get(old.id)
  assert.equal(got?.secrets?.kid, 'k2')
  // The new key alone opens it now, to the same password; nothing else in the record changed.
  const onlyNew = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: k2, PORTHOLE_SECRET_KEY_ID: 'k2', PORTHOLE_OLD_SECRET_KEYS: '' })
  assert.deepEqual(onlyNew.open<ServerSecrets>(got?.secrets as NonNullable<StoredServer['secrets']>, old.id), { connection: { password: 'bmc-pass-1' } })
  assert.deepEqual({ ...got, secrets: undefined }, { ...old, secrets: undefined })
  assert.deepEqual(await store.get(current.id), current, 'a record under the current key is left alone')
  assert.deepEqual(await store.get(orphan.id), orphan, 'a record under an unknown key is left as it is')
  assert.deepEqual(await store.resealStale(after), { resealed: 0, left: 1 }, 'a second pass finds nothing more to do')
})
