/**
 * The console page's keymap (public/keymap.js, plain browser JavaScript without DOM use): which keys each
 * character takes on a US and a German guest, with and without scancodes, the key menu's combinations, the
 * serial bytes, and the pacing of typeAtPace (order, interval, cancel).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'

interface Key { keysym: number, code: string }
interface Stroke { char: string, keys: Key[] }
interface Keymap {
  KEY: Record<string, Key>
  COMBOS: Record<string, { label: string, keys: Key[] }>
  LAYOUTS: Record<string, { label: string }>
  strokesFor: (text: string, layout?: string, o?: { scancodes?: boolean }) => Stroke[]
  serialBytesFor: (text: string) => Uint8Array[]
  typeAtPace: <T>(items: T[], send: (item: T) => void, o?: { intervalMs?: number, signal?: AbortSignal, onProgress?: (n: number, total: number) => void }) => Promise<{ sent: number, total: number, cancelled: boolean }>
}
// A path the compiler does not follow: the page's sources are JavaScript served as they are.
const km = await import(new URL('../../public/keymap.js', import.meta.url).href) as Keymap

const flat = (s: Stroke[]): string[] => s.map(x => x.keys.map(k => `${k.code}:${k.keysym.toString(16)}`).join('+'))

test('US: letters, shifted symbols and line ends become the keys a US keyboard has', () => {
  assert.deepEqual(flat(km.strokesFor('aZ1!\n', 'us')), [
    'KeyA:61', 'ShiftLeft:ffe1+KeyZ:5a', 'Digit1:31', 'ShiftLeft:ffe1+Digit1:21', 'Enter:ff0d'
  ])
  assert.deepEqual(flat(km.strokesFor('a\r\nb\rc\td ', 'us')), ['KeyA:61', 'Enter:ff0d', 'KeyB:62', 'Enter:ff0d', 'KeyC:63', 'Tab:ff09', 'KeyD:64', 'Space:20'])
  // Every printable ASCII character has exactly one key press, with at most Shift.
  const ascii = Array.from({ length: 95 }, (_, i) => String.fromCharCode(0x20 + i)).join('')
  const s = km.strokesFor(ascii, 'us')
  assert.equal(s.length, 95)
  for (const [i, x] of s.entries()) {
    assert.equal(x.keys.at(-1)?.keysym, 0x20 + i, `keysym of ${JSON.stringify(ascii[i])}`)
    assert.ok(x.keys.length === 1 || (x.keys.length === 2 && x.keys[0]?.code === 'ShiftLeft'))
  }
})

test('German: the guest\'s own keys (Y and Z swapped, AltGr for @, umlauts); dead keys completed by a space only where scancodes count', () => {
  assert.deepEqual(flat(km.strokesFor('zy@ä€|', 'de')), [
    'KeyY:7a', 'KeyZ:79', 'AltRight:fe03+KeyQ:40', 'Quote:e4', 'AltRight:fe03+KeyE:20ac', 'AltRight:fe03+IntlBackslash:7c'
  ])
  assert.deepEqual(flat(km.strokesFor('"/-:', 'de')), ['ShiftLeft:ffe1+Digit2:22', 'ShiftLeft:ffe1+Digit7:2f', 'Slash:2d', 'ShiftLeft:ffe1+Period:3a'])
  assert.deepEqual(flat(km.strokesFor('^a', 'de', { scancodes: true })), ['Backquote:5e', 'Space:20', 'KeyA:61'])
  assert.deepEqual(flat(km.strokesFor('^a', 'de', { scancodes: false })), ['Backquote:5e', 'KeyA:61'])
  // The same text on a US guest takes other keys.
  assert.deepEqual(flat(km.strokesFor('z@', 'us')), ['KeyZ:7a', 'ShiftLeft:ffe1+Digit2:40'])
})

test('French: AZERTY positions, digits with Shift, AltGr for @ and the accented letters on the digit row', () => {
  assert.deepEqual(flat(km.strokesFor('azqwm1@é,.', 'fr')), [
    'KeyQ:61', 'KeyW:7a', 'KeyA:71', 'KeyZ:77', 'Semicolon:6d', 'ShiftLeft:ffe1+Digit1:31', 'AltRight:fe03+Digit0:40',
    'Digit2:e9', 'KeyM:2c', 'ShiftLeft:ffe1+Comma:2e'
  ])
  assert.deepEqual(flat(km.strokesFor('\\~^¨', 'fr')), ['AltRight:fe03+Digit8:5c', 'AltRight:fe03+Digit2:7e', 'AltRight:fe03+Digit9:5e', 'ShiftLeft:ffe1+BracketLeft:a8', 'Space:20'])
  // Every printable ASCII character can be typed on each layout.
  const ascii = Array.from({ length: 95 }, (_, i) => String.fromCharCode(0x20 + i)).join('')
  for (const l of ['us', 'de', 'fr']) assert.ok(km.strokesFor(ascii, l, { scancodes: false }).length === 95, l)
})

test('characters a layout cannot type are refused, all named, before anything is sent', () => {
  assert.throws(() => km.strokesFor('café 中', 'us'), (e: Error) => e instanceof TypeError && /English \(US\).*"é" "中"/.test(e.message))
  assert.throws(() => km.strokesFor('a', 'xx'), /unknown keyboard layout/)
  assert.throws(() => km.strokesFor('ok é', 'de'), /German keyboard layout cannot type: "é"$/)
  assert.deepEqual(km.LAYOUTS.us?.label, 'English (US)')
})

test('the key menu holds the keys a browser keeps for itself', () => {
  const codes = (id: string): string[] => km.COMBOS[id]?.keys.map(k => k.code) ?? []
  assert.deepEqual(codes('ctrl-alt-del'), ['ControlLeft', 'AltLeft', 'Delete'])
  assert.deepEqual(codes('ctrl-alt-f1'), ['ControlLeft', 'AltLeft', 'F1'])
  assert.deepEqual(km.COMBOS['ctrl-alt-f12']?.keys.map(k => k.keysym), [0xffe3, 0xffe9, 0xffc9])
  assert.deepEqual(codes('alt-tab'), ['AltLeft', 'Tab'])
  assert.deepEqual(codes('super'), ['MetaLeft'])
  assert.deepEqual(codes('esc'), ['Escape'])
  assert.deepEqual(codes('print'), ['PrintScreen'])
})

test('a serial line gets UTF-8 per character and a carriage return for each line end', () => {
  const b = km.serialBytesFor('aé\r\nb\n')
  assert.deepEqual(b.map(x => Buffer.from(x).toString('hex')), ['61', 'c3a9', '0d', '62', '0d'])
})

test('typeAtPace sends in order, one at a time at the interval, and stops on cancel', async () => {
  const at: Array<[string, number]> = []
  const t0 = performance.now()
  const r = await km.typeAtPace(['a', 'b', 'c', 'd'], (x) => at.push([x, performance.now() - t0]), { intervalMs: 30 })
  assert.deepEqual(r, { sent: 4, total: 4, cancelled: false })
  assert.deepEqual(at.map(x => x[0]), ['a', 'b', 'c', 'd'])
  // setTimeout never fires early: each gap is at least the interval (less a timer's millisecond of rounding).
  for (let i = 1; i < at.length; i++) assert.ok((at[i]?.[1] ?? 0) - (at[i - 1]?.[1] ?? 0) >= 29, `gap ${i}`)

  // Cancelled while waiting between two keys: it stops at once, not after the interval.
  const ac = new AbortController()
  const sent: string[] = []
  const progress: number[] = []
  const stopped = km.typeAtPace(['a', 'b', 'c'], (x) => { sent.push(x); if (x === 'a') setImmediate(() => ac.abort()) }, { intervalMs: 600_000, signal: ac.signal, onProgress: (n) => progress.push(n) })
  assert.deepEqual(await stopped, { sent: 1, total: 3, cancelled: true })
  assert.deepEqual(sent, ['a'])
  assert.deepEqual(progress, [1])
  // Cancelled by the send itself (the page aborts when the console closes): nothing more is sent.
  const ac2 = new AbortController()
  const sent2: string[] = []
  assert.deepEqual(await km.typeAtPace(['a', 'b'], (x) => { sent2.push(x); ac2.abort() }, { intervalMs: 600_000, signal: ac2.signal }), { sent: 1, total: 2, cancelled: true })
  assert.deepEqual(sent2, ['a'])
})
