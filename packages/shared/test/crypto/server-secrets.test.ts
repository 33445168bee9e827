import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import type { StoredServer } from '@porthole/contracts'
import { SecretBox, changedDestinationField, openServerSecrets, sealServerSecrets, secretDestination } from '../../src/crypto/index.js'

const box = new SecretBox('k1', new Map([['k1', randomBytes(32)]]))

function record (agent: StoredServer['agent'], connection: Record<string, unknown>, console?: Record<string, unknown>): StoredServer {
  const now = new Date().toISOString()
  // Any connection, valid or not: these tests are about what binds the password, not about the schema.
  const s = { id: randomUUID(), tenantId: randomUUID(), name: 'x', agent, connection, secretPaths: ['connection.password'], createdAt: now, updatedAt: now } as unknown as StoredServer
  if (console !== undefined) { s.console = console; s.secretPaths.push('console.password') }
  s.sealed = sealServerSecrets(box, s, { connection: { password: 'conn-pw' }, ...(console === undefined ? {} : { console: { password: 'vnc-pw' } }) })
  return s
}

test('each destination field of each agent type binds the password; other fields do not', () => {
  const cases: Array<[StoredServer, Array<[string, unknown]>, Array<[string, unknown]>]> = [
    [record('ipmi', { host: '10.0.0.1', port: 623, username: 'admin', cipherSuite: 3 }), [['host', '10.0.0.2'], ['port', 624], ['port', undefined], ['username', 'root'], ['cipherSuite', 0]], []],
    [record('ovirt', { url: 'https://e.example/ovirt-engine', username: 'admin@internal', vmId: 'v1', caCert: 'PEM' }), [['url', 'https://f.example/ovirt-engine'], ['username', 'u'], ['caCert', 'PEM2'], ['caCert', undefined]], [['vmId', 'v2']]],
    [record('kvm', { uri: 'qemu+ssh://a/system', domain: 'd' }), [['uri', 'qemu+ssh://b/system']], [['domain', 'e']]],
    [record('kvm', { transport: 'ssh', host: 'a', user: 'ops', domain: 'd' }), [['host', 'b'], ['transport', 'tcp'], ['port', 2222], ['user', 'root'], ['keyFile', 'id_other']], [['domain', 'e']]]
  ]
  for (const [s, moves, harmless] of cases) {
    assert.deepEqual(openServerSecrets(box, s), { connection: { password: 'conn-pw' } })
    for (const [field, value] of moves) {
      const moved = { ...s, connection: { ...s.connection, [field]: value } } as StoredServer
      assert.equal(changedDestinationField(s.agent, 'connection', s.connection, moved.connection), field)
      assert.throws(() => openServerSecrets(box, moved), (e: Error & { code?: string }) => e.code === 'auth' && !e.message.includes('conn-pw'), `${s.agent} ${field}`)
    }
    for (const [field, value] of harmless) {
      const other = { ...s, connection: { ...s.connection, [field]: value } } as StoredServer
      assert.equal(changedDestinationField(s.agent, 'connection', s.connection, other.connection), undefined)
      assert.deepEqual(openServerSecrets(box, other), { connection: { password: 'conn-pw' } }, `${s.agent} ${field} is not where the password goes`)
    }
  }
})

test('a password opens only for its purpose and its server', () => {
  const s = record('ipmi', { host: '10.0.0.1', username: 'admin' }, { host: '10.0.0.1', port: 5900 })
  assert.deepEqual(openServerSecrets(box, s), { connection: { password: 'conn-pw' }, console: { password: 'vnc-pw' } })
  // The console box moved into the connection slot (and back) does not open there.
  const swapped = { ...s, sealed: { connection: s.sealed?.console, console: s.sealed?.connection } }
  assert.throws(() => openServerSecrets(box, swapped), /does not open/)
  assert.throws(() => openServerSecrets(box, { ...s, id: randomUUID() }), /does not open/)
  assert.throws(() => openServerSecrets(box, { ...s, console: { host: '10.0.0.1', port: 5901 } }), /console password/)
  // Whitespace-only CA is no CA to the agent, so it is the same destination.
  assert.equal(secretDestination('ovirt', 'connection', { url: 'u', username: 'n', caCert: '  ' }), secretDestination('ovirt', 'connection', { url: 'u', username: 'n' }))
})

test('a box under a key that is not configured is an internal error, not a tampering', () => {
  const s = record('ipmi', { host: '10.0.0.1', username: 'admin' })
  const other = new SecretBox('k9', new Map([['k9', randomBytes(32)]]))
  assert.throws(() => openServerSecrets(other, s), (e: Error & { code?: string }) => e.code === 'internal' && /key k1/.test(e.message))
})
