import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { nextSolTicket, randomToken, readSolHello, SOL_HELLO_SKEW_MS, writeSolHello } from '../../src/crypto/index.js'

test('a signed SOL hello reads back with its fields; its successor ticket is derived, never sent', () => {
  const secret = randomBytes(32)
  const token = randomToken(32)
  const sessionId = randomUUID()
  const { line, next } = writeSolHello(secret, token, sessionId, 1_700_000_000_000)
  assert.ok(line.endsWith('\n'))
  const h = readSolHello(secret, line.slice(0, -1), 1_700_000_000_000)
  assert.ok(h !== undefined)
  assert.deepEqual([h.token, h.sessionId, h.at], [token, sessionId, 1_700_000_000_000])
  assert.equal(nextSolTicket(secret, token, h.nonce), next)
  assert.match(next, /^[A-Za-z0-9_-]{43}$/)
  assert.ok(!line.includes(next), 'the successor is not on the wire')
  assert.ok(!line.includes(secret.toString('base64')) && !line.includes(secret.toString('base64url')))
  // Two hellos for one ticket differ (their nonces), and so do their successors.
  const again = writeSolHello(secret, token, sessionId, 1_700_000_000_000)
  assert.notEqual(again.line, line)
  assert.notEqual(again.next, next)
})

test('a SOL hello with another secret, a changed field, or a time out of the window does not read', () => {
  const secret = randomBytes(32)
  const now = Date.now()
  const { line } = writeSolHello(secret, randomToken(32), randomUUID(), now)
  const bare = line.slice(0, -1)
  const f = bare.split(' ')
  assert.equal(readSolHello(randomBytes(32), bare, now), undefined, 'another secret')
  for (let i = 1; i < f.length; i++) {
    const changed = [...f]
    const v = changed[i] ?? ''
    changed[i] = (v[0] === 'A' ? 'B' : 'A') + v.slice(1)
    assert.equal(readSolHello(secret, changed.join(' '), now), undefined, `field ${i} changed`)
  }
  assert.equal(readSolHello(secret, `${bare} extra`, now), undefined)
  assert.equal(readSolHello(secret, bare.replace('PORTHOLE-SOL/2 ', 'PORTHOLE-SOL '), now), undefined)
  assert.ok(readSolHello(secret, bare, now + SOL_HELLO_SKEW_MS) !== undefined)
  assert.equal(readSolHello(secret, bare, now + SOL_HELLO_SKEW_MS + 1), undefined, 'too old')
  assert.equal(readSolHello(secret, bare, now - SOL_HELLO_SKEW_MS - 1), undefined, 'from the future')
})
