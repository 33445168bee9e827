import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import { encryptGuacToken, guacConnection, guacTokenKey, isGuacInput } from '../src/guac.js'

const require = createRequire(import.meta.url)
type CryptCtor = new (cypher: string, key: Buffer) => { decrypt: (s: string) => unknown }
const Crypt = require('guacamole-lite/lib/Crypt.js') as CryptCtor

test('guacamole-lite\'s own Crypt opens the tokens the gateway builds, every time', () => {
  const key = guacTokenKey(randomBytes(32))
  const crypt = new Crypt('AES-256-CBC', key)
  // guacamole-lite decodes the IV through an 'ascii' string; an IV byte with its high bit set would garble
  // the first block. 200 tokens make a silent failure of the workaround certain to show.
  for (let i = 0; i < 200; i++) {
    const data = guacConnection({ kind: 'vnc', host: `10.0.0.${i % 250}`, port: 5900 + i, password: randomBytes(6).toString('base64url') })
    assert.deepEqual(crypt.decrypt(encryptGuacToken(key, data)), data)
  }
})

test('the guacamole-lite key is derived from CONSOLE_KEY and differs from it', () => {
  const k = randomBytes(32)
  assert.equal(guacTokenKey(k).length, 32)
  assert.notDeepEqual(guacTokenKey(k), k)
  assert.deepEqual(guacTokenKey(k), guacTokenKey(Buffer.from(k)))
})

test('only keyboard and mouse instructions count as input for the idle timeout', () => {
  assert.equal(isGuacInput('3.key,5.65507,1.1;'), true)
  assert.equal(isGuacInput('4.sync,8.12345678;5.mouse,2.10,2.20,1.1;'), true)
  assert.equal(isGuacInput('4.sync,8.12345678;'), false)
  assert.equal(isGuacInput('0.,4.ping,13.1700000000000;'), false)
  assert.equal(isGuacInput('3.nop;'), false)
})

test('a view-only share asks guacd for its read-only mode; an owner does not', () => {
  const t = { kind: 'vnc' as const, host: '10.0.0.1', port: 5901 }
  assert.equal(guacConnection(t, { readOnly: true }).connection.settings['read-only'], 'true')
  assert.equal(guacConnection(t).connection.settings['read-only'], undefined)
  assert.equal(guacConnection(t, { readOnly: false }).connection.settings['read-only'], undefined)
})
