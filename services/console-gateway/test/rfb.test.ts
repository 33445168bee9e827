import { test } from 'node:test'
import assert from 'node:assert/strict'
import { acceptViewer, ByteQueue, onlyUpdateRequests } from '../src/rfb.js'

test('a 3.8 viewer is offered only None and gets a security result', async () => {
  const q = new ByteQueue()
  const sent: Buffer[] = []
  const done = acceptViewer(q, b => sent.push(b))
  q.push(Buffer.from('RFB 003.008\n'))
  q.push(Buffer.from([1, 1])) // chose None, then ClientInit (shared)
  const rest = await done
  assert.deepEqual(Buffer.concat(sent), Buffer.concat([Buffer.from('RFB 003.008\n'), Buffer.from([1, 1]), Buffer.alloc(4)]))
  assert.deepEqual(rest, Buffer.from([1]))
})

test('a 3.3 viewer is told None by the server, with no security result', async () => {
  const q = new ByteQueue()
  const sent: Buffer[] = []
  const done = acceptViewer(q, b => sent.push(b))
  q.push(Buffer.from('RFB 003.003\n'))
  await done
  assert.deepEqual(Buffer.concat(sent), Buffer.concat([Buffer.from('RFB 003.008\n'), Buffer.from([0, 0, 0, 1])]))
})

test('a viewer choosing a type it was not offered is refused', async () => {
  const q = new ByteQueue()
  const done = acceptViewer(q, () => {})
  q.push(Buffer.from('RFB 003.008\n'))
  q.push(Buffer.from([2]))
  await assert.rejects(done, /not offered/)
})

test('framebuffer update requests alone are not input', () => {
  const fbur = Buffer.from([3, 1, 0, 0, 0, 0, 4, 0, 3, 0])
  assert.equal(onlyUpdateRequests(fbur), true)
  assert.equal(onlyUpdateRequests(Buffer.concat([fbur, fbur])), true)
  assert.equal(onlyUpdateRequests(Buffer.from([4, 1, 0, 0, 0, 0, 0xff, 0xe3])), false) // KeyEvent
  assert.equal(onlyUpdateRequests(Buffer.from([5, 0, 0, 10, 0, 20])), false) // PointerEvent
})
