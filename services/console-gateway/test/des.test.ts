import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { desEncryptBlock, vncAuthResponse } from '../src/des.js'

/** DES-ECB of one block by the OpenSSL command line (its legacy provider), as an independent oracle. */
function opensslDes (key: Buffer, block: Buffer): Buffer {
  return execFileSync('openssl', ['enc', '-des-ecb', '-K', key.toString('hex'), '-nopad', '-provider', 'legacy', '-provider', 'default'], { input: block })
}

test('DES matches the textbook vector', () => {
  const out = desEncryptBlock(Buffer.from('133457799BBCDFF1', 'hex'), Buffer.from('0123456789ABCDEF', 'hex'))
  assert.equal(out.toString('hex'), '85e813540f0ab405')
})

test('DES matches OpenSSL on random keys and blocks', () => {
  for (let i = 0; i < 8; i++) {
    const key = randomBytes(8)
    const block = randomBytes(8)
    assert.equal(desEncryptBlock(key, block).toString('hex'), opensslDes(key, block).toString('hex'))
  }
})

test('the VNC response uses the bit-reversed, zero-padded, 8-character key', () => {
  const challenge = randomBytes(16)
  const rev = (b: number): number => { let r = 0; for (let i = 0; i < 8; i++) r |= ((b >> i) & 1) << (7 - i); return r }
  const key = Buffer.alloc(8)
  Buffer.from('s3cret').copy(key)
  const k = Buffer.from([...key].map(rev))
  const expected = Buffer.concat([opensslDes(k, challenge.subarray(0, 8)), opensslDes(k, challenge.subarray(8))])
  assert.equal(vncAuthResponse('s3cret', challenge).toString('hex'), expected.toString('hex'))
  // VNC uses only the first 8 characters
  assert.deepEqual(vncAuthResponse('12345678', challenge), vncAuthResponse('123456789abc', challenge))
  assert.throws(() => vncAuthResponse('x', Buffer.alloc(8)))
})
