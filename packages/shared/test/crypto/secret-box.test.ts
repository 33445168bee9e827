import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { SecretBox, sha256Hex, randomToken } from '../../src/crypto/index.js'
import { ConfigError } from '../../src/config/index.js'

const key = (): string => randomBytes(32).toString('base64')

test('a sealed secret opens with the same key and place, and its ciphertext does not contain it', () => {
  const box = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: key(), PORTHOLE_SECRET_KEY_ID: 'k1', PORTHOLE_OLD_SECRET_KEYS: '' })
  const sealed = box.seal({ password: 'hunter2-very-secret' }, 'server-1')
  assert.equal(sealed.kid, 'k1')
  assert.ok(!JSON.stringify(sealed).includes('hunter2'))
  assert.deepEqual(box.open(sealed, 'server-1'), { password: 'hunter2-very-secret' })
})

test('a box moved to another record, or tampered with, does not open', () => {
  const box = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: key(), PORTHOLE_SECRET_KEY_ID: 'k1', PORTHOLE_OLD_SECRET_KEYS: '' })
  const sealed = box.seal({ password: 'x' }, 'server-1')
  assert.throws(() => box.open(sealed, 'server-2'), /did not open/)
  const ct = Buffer.from(sealed.ct, 'base64'); ct[0] = (ct[0] ?? 0) ^ 1
  assert.throws(() => box.open({ ...sealed, ct: ct.toString('base64') }, 'server-1'), /did not open/)
})

test('after a key rotation old boxes still open, new ones use the new key, and stale ones are flagged', () => {
  const k1 = key(); const k2 = key()
  const old = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: k1, PORTHOLE_SECRET_KEY_ID: 'k1', PORTHOLE_OLD_SECRET_KEYS: '' })
  const sealed = old.seal('v', 'a')
  const rotated = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: k2, PORTHOLE_SECRET_KEY_ID: 'k2', PORTHOLE_OLD_SECRET_KEYS: `k1:${k1}` })
  assert.equal(rotated.open(sealed, 'a'), 'v')
  assert.equal(rotated.isStale(sealed), true)
  assert.equal(rotated.seal('v', 'a').kid, 'k2')
  const without = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: k2, PORTHOLE_SECRET_KEY_ID: 'k2', PORTHOLE_OLD_SECRET_KEYS: '' })
  assert.throws(() => without.open(sealed, 'a'), /unknown key k1/)
})

test('a key of the wrong length is refused naming the variable', () => {
  assert.throws(() => SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: Buffer.alloc(16).toString('base64'), PORTHOLE_SECRET_KEY_ID: 'k1', PORTHOLE_OLD_SECRET_KEYS: '' }),
    (e: unknown) => e instanceof ConfigError && e.variable === 'PORTHOLE_SECRET_KEY')
  assert.throws(() => SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: key(), PORTHOLE_SECRET_KEY_ID: 'k1', PORTHOLE_OLD_SECRET_KEYS: 'nocolon' }),
    (e: unknown) => e instanceof ConfigError && e.variable === 'PORTHOLE_OLD_SECRET_KEYS')
})

test('tokens are long, random and URL-safe; hashes are hex SHA-256', () => {
  const a = randomToken(); const b = randomToken()
  assert.notEqual(a, b)
  assert.match(a, /^[A-Za-z0-9_-]{43}$/)
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
})

test('the console transit key is a box of its own, and never the server credentials key', () => {
  const k = key()
  const transit = SecretBox.forConsoleTransit({ CONSOLE_TRANSIT_KEY: key(), CONSOLE_TRANSIT_KEY_ID: 't1', CONSOLE_OLD_TRANSIT_KEYS: '', PORTHOLE_SECRET_KEY: k })
  const credentials = SecretBox.fromSettings({ PORTHOLE_SECRET_KEY: k, PORTHOLE_SECRET_KEY_ID: 't1', PORTHOLE_OLD_SECRET_KEYS: '' })
  assert.throws(() => credentials.open(transit.seal('target', 'job-1'), 'job-1'), /did not open/, 'same key id, other key')
  assert.throws(() => SecretBox.forConsoleTransit({ CONSOLE_TRANSIT_KEY: k, CONSOLE_TRANSIT_KEY_ID: 't1', CONSOLE_OLD_TRANSIT_KEYS: '', PORTHOLE_SECRET_KEY: k }),
    (e: unknown) => e instanceof ConfigError && e.variable === 'CONSOLE_TRANSIT_KEY')
  assert.throws(() => SecretBox.forConsoleTransit({ CONSOLE_TRANSIT_KEY: Buffer.alloc(8).toString('base64'), CONSOLE_TRANSIT_KEY_ID: 't1', CONSOLE_OLD_TRANSIT_KEYS: '' }),
    (e: unknown) => e instanceof ConfigError && e.variable === 'CONSOLE_TRANSIT_KEY')
})
