/**
 * The view-only filter on its own: which RFB client messages pass, message boundaries across chunks (one byte
 * at a time), the extended clipboard's negative length, and messages it cannot size.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ViewOnlyFilter, viewOnlyClientInit } from '../src/view-only.js'

const u16 = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b }
const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b }
const s32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b }

const PASS = [
  Buffer.concat([Buffer.from([0, 0, 0, 0]), Buffer.alloc(16, 7)]), // SetPixelFormat
  Buffer.concat([Buffer.from([2, 0]), u16(3), s32(0), s32(-223), s32(-258)]), // SetEncodings
  Buffer.concat([Buffer.from([3, 1]), u16(0), u16(0), u16(640), u16(480)]), // FramebufferUpdateRequest
  Buffer.concat([Buffer.from([150, 1]), u16(0), u16(0), u16(640), u16(480)]), // EnableContinuousUpdates
  Buffer.concat([Buffer.from([248, 0, 0, 0]), u32(3), Buffer.from([2]), Buffer.from('abc').subarray(0, 2)]) // ClientFence, 2 bytes of payload
]
const DROP = [
  Buffer.concat([Buffer.from([4, 1, 0, 0]), u32(0x61)]), // KeyEvent
  Buffer.concat([Buffer.from([5, 1]), u16(5), u16(6)]), // PointerEvent
  Buffer.concat([Buffer.from([6, 0, 0, 0]), u32(3), Buffer.from('abc')]), // ClientCutText
  Buffer.concat([Buffer.from([6, 0, 0, 0]), s32(-6), u32(1), Buffer.from('xy')]), // extended clipboard (length -6)
  Buffer.concat([Buffer.from([255, 0]), u16(1), u32(0x61), u32(30)]), // QEMU extended key event
  Buffer.concat([Buffer.from([255, 1]), u16(2), Buffer.from([3, 2]), u32(44100)]), // QEMU audio set format
  Buffer.concat([Buffer.from([255, 1]), u16(0)]), // QEMU audio enable
  Buffer.from([250, 0, 1, 4]), // xvp reboot
  Buffer.concat([Buffer.from([251, 0]), u16(800), u16(600), Buffer.from([2, 0]), Buffer.alloc(32)]) // SetDesktopSize, two screens
]

test('only what drawing the screen takes passes, in order, however the stream is cut', () => {
  const stream: Buffer[] = []
  for (let i = 0; i < Math.max(PASS.length, DROP.length); i++) {
    if (DROP[i] !== undefined) stream.push(DROP[i] as Buffer)
    if (PASS[i] !== undefined) stream.push(PASS[i] as Buffer)
  }
  const all = Buffer.concat(stream)
  const expected = Buffer.concat(PASS)
  for (const size of [all.length, 1, 3, 7]) {
    const f = new ViewOnlyFilter()
    const out: Buffer[] = []
    for (let i = 0; i < all.length; i += size) {
      const r = f.push(all.subarray(i, i + size))
      assert.ok(r !== undefined)
      out.push(r)
    }
    assert.deepEqual(Buffer.concat(out), expected, `chunks of ${size}`)
    assert.deepEqual([...f.dropped.entries()].sort((a, b) => a[0] - b[0]), [[4, 1], [5, 1], [6, 2], [250, 1], [251, 1], [255, 3]])
  }
})

test('a message it cannot size ends the stream; the ClientInit is made shared', () => {
  assert.equal(new ViewOnlyFilter().push(Buffer.from([99, 0, 0, 0])), undefined)
  assert.equal(new ViewOnlyFilter().push(Buffer.concat([Buffer.from([255, 9]), u16(0)])), undefined)
  const f = new ViewOnlyFilter()
  const init = viewOnlyClientInit(f, Buffer.concat([Buffer.from([0]), DROP[0] as Buffer, PASS[2] as Buffer]))
  assert.deepEqual(init, Buffer.concat([Buffer.from([1]), PASS[2] as Buffer]))
})
