// Characters to key presses, for "Paste as keys": pure, no DOM (test/keymap.test.ts runs it under node).
//
// A VNC viewer sends X11 keysyms; noVNC also sends the key's physical position (an XT scancode, from the
// `code` of a key) when the server has the QEMU extended key event, as QEMU does. What the guest sees then
// depends on which of the two the server uses:
// - scancodes (QEMU with noVNC): QEMU passes the physical key on and the *guest's* keyboard layout turns it
//   into a character. So the page must press the key that gives the character in the guest's layout: on a
//   German guest, `z` is the key a US keyboard calls Y. That is what the layout choice is for, and it is
//   right whatever `keymap` the libvirt domain has.
// - keysyms only (guacamole through guacd, VNC servers without the extension, e.g. a BMC's): the server turns
//   the keysym into a key with its own keymap (QEMU: the domain's `keymap`, en-us by default), and presses no
//   modifier for us; so the page sends the modifiers the chosen layout needs, and the character's keysym.
//   Dead keys (`^` `´` `` ` `` on German) are then sent as the plain character, without the space that
//   completes them on a real keyboard.
// A stroke is the keys of one character, pressed in order and released in reverse.

/** @typedef {{ keysym: number, code: string }} Key */
/** @typedef {{ char: string, keys: Key[] }} Stroke */

export const KEY = {
  Shift: { keysym: 0xffe1, code: 'ShiftLeft' },
  Control: { keysym: 0xffe3, code: 'ControlLeft' },
  Alt: { keysym: 0xffe9, code: 'AltLeft' },
  AltGr: { keysym: 0xfe03, code: 'AltRight' }, // ISO_Level3_Shift
  Super: { keysym: 0xffeb, code: 'MetaLeft' },
  Return: { keysym: 0xff0d, code: 'Enter' },
  Tab: { keysym: 0xff09, code: 'Tab' },
  Escape: { keysym: 0xff1b, code: 'Escape' },
  Delete: { keysym: 0xffff, code: 'Delete' },
  BackSpace: { keysym: 0xff08, code: 'Backspace' },
  Print: { keysym: 0xff61, code: 'PrintScreen' },
  Left: { keysym: 0xff51, code: 'ArrowLeft' },
  Up: { keysym: 0xff52, code: 'ArrowUp' },
  Right: { keysym: 0xff53, code: 'ArrowRight' },
  Down: { keysym: 0xff54, code: 'ArrowDown' },
  Space: { keysym: 0x20, code: 'Space' }
}
/** F1…F12. */
export const fkey = (n) => ({ keysym: 0xffbe + n - 1, code: 'F' + n })

/** The key menu: label → keys pressed together. */
export const COMBOS = {
  'ctrl-alt-del': { label: 'Ctrl-Alt-Del', keys: [KEY.Control, KEY.Alt, KEY.Delete] },
  ...Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`ctrl-alt-f${i + 1}`, { label: `Ctrl-Alt-F${i + 1}`, keys: [KEY.Control, KEY.Alt, fkey(i + 1)] }])),
  'alt-tab': { label: 'Alt-Tab', keys: [KEY.Alt, KEY.Tab] },
  super: { label: 'Windows key', keys: [KEY.Super] },
  esc: { label: 'Esc', keys: [KEY.Escape] },
  print: { label: 'Print Screen', keys: [KEY.Print] }
}

/** The keysym of a character: Latin-1 as it is, € by its name, anything else as Unicode (0x01000000 + code point). */
export function keysymOf (ch) {
  const cp = ch.codePointAt(0)
  if ((cp >= 0x20 && cp <= 0x7e) || (cp >= 0xa0 && cp <= 0xff)) return cp
  if (cp === 0x20ac) return 0x20ac // EuroSign
  return 0x01000000 + cp
}

// A layout: for each key (`code`), the characters of its levels: [plain, Shift, AltGr]. `deadKeys` gives
// the characters a real keyboard types only as dead key + space.
const row = (codes, plain, shifted, altgr = '') => codes.map((code, i) => [code, [plain[i], shifted[i], altgr[i]]])
const letters = (codes) => codes.map((c) => [`Key${c}`, [c.toLowerCase(), c, undefined]])

const US = [
  ...row(['Backquote', 'Digit1', 'Digit2', 'Digit3', 'Digit4', 'Digit5', 'Digit6', 'Digit7', 'Digit8', 'Digit9', 'Digit0', 'Minus', 'Equal'], '`1234567890-=', '~!@#$%^&*()_+'),
  ...letters('QWERTYUIOPASDFGHJKLZXCVBNM'.split('')),
  ...row(['BracketLeft', 'BracketRight', 'Backslash', 'Semicolon', 'Quote', 'Comma', 'Period', 'Slash'], '[]\\;\',./', '{}|:"<>?')
]

// German (T1, as Windows, macOS' "German" aside, and Linux `de` have it): Y and Z swapped, umlauts, AltGr.
const DE = [
  ...row(['Backquote', 'Digit1', 'Digit2', 'Digit3', 'Digit4', 'Digit5', 'Digit6', 'Digit7', 'Digit8', 'Digit9', 'Digit0', 'Minus', 'Equal'],
    '^1234567890ß´', '°!"§$%&/()=?`', ['', '', '²', '³', '', '', '', '{', '[', ']', '}', '\\', '']),
  ...letters('WRTUIOPASDFGHJKLXCVBN'.split('')),
  ['KeyZ', ['y', 'Y', undefined]], ['KeyY', ['z', 'Z', undefined]],
  ['KeyQ', ['q', 'Q', '@']], ['KeyE', ['e', 'E', '€']], ['KeyM', ['m', 'M', 'µ']],
  ...row(['BracketLeft', 'BracketRight', 'Backslash', 'Semicolon', 'Quote', 'IntlBackslash', 'Comma', 'Period', 'Slash'],
    'ü+#öä<,.-', 'Ü*\'ÖÄ>;:_', ['', '~', '', '', '', '|', '', '', ''])
]

// French (AZERTY, as Linux `fr` has it): A/Q and Z/W swapped, M right of L, digits with Shift. `^` is typed
// with AltGr-9 and `~` `` ` `` with AltGr, all plain characters there (Windows makes `~` and `` ` `` dead keys,
// so on a Windows guest they come out with a space after them); only `¨` is a dead key.
const FR = [
  ...row(['Backquote', 'Digit1', 'Digit2', 'Digit3', 'Digit4', 'Digit5', 'Digit6', 'Digit7', 'Digit8', 'Digit9', 'Digit0', 'Minus', 'Equal'],
    '²&é"\'(-è_çà)=', ['', '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '°', '+'], ['', '', '~', '#', '{', '[', '|', '`', '\\', '^', '@', ']', '}']),
  ['KeyQ', ['a', 'A', undefined]], ['KeyW', ['z', 'Z', undefined]], ['KeyA', ['q', 'Q', undefined]], ['KeyZ', ['w', 'W', undefined]],
  ['Semicolon', ['m', 'M', undefined]], ['KeyE', ['e', 'E', '€']],
  ...letters('RTYUIOPSDFGHJKLXCVBN'.split('')),
  ...row(['BracketLeft', 'BracketRight', 'Backslash', 'Quote', 'IntlBackslash', 'KeyM', 'Comma', 'Period', 'Slash'],
    '^$*ù<,;:!', '¨£µ%>?./§', ['', '¤', '', '', '', '', '', '', ''])
]

export const LAYOUTS = {
  us: { label: 'English (US)', keys: US, deadKeys: '' },
  de: { label: 'German', keys: DE, deadKeys: '^´`' },
  fr: { label: 'French (AZERTY)', keys: FR, deadKeys: '¨' }
}

const tables = new Map()
function table (layout) {
  let t = tables.get(layout)
  if (t !== undefined) return t
  const l = LAYOUTS[layout]
  if (l === undefined) throw new Error(`unknown keyboard layout ${layout}`)
  t = new Map()
  for (const [code, levels] of l.keys) {
    levels.forEach((ch, level) => {
      if (ch === undefined || ch === '' || t.has(ch)) return
      t.set(ch, { code, level })
    })
  }
  tables.set(layout, t)
  return t
}

/**
 * The strokes that type `text` on a guest with keyboard `layout`. `scancodes`: whether the server takes the
 * keys' positions (see above). Line ends (`\n`, `\r\n`, `\r`) become Enter, tabs Tab. Throws a
 * `TypeError` listing the characters the layout cannot type, before anything is sent.
 * @returns {Stroke[]}
 */
export function strokesFor (text, layout = 'us', { scancodes = true } = {}) {
  const t = table(layout)
  const dead = LAYOUTS[layout].deadKeys
  const out = []
  const missing = new Set()
  const chars = [...text.replace(/\r\n?/g, '\n')]
  for (const ch of chars) {
    if (ch === '\n') { out.push({ char: ch, keys: [KEY.Return] }); continue }
    if (ch === '\t') { out.push({ char: ch, keys: [KEY.Tab] }); continue }
    if (ch === ' ') { out.push({ char: ch, keys: [KEY.Space] }); continue }
    const k = t.get(ch)
    if (k === undefined) { missing.add(ch); continue }
    const mods = k.level === 1 ? [KEY.Shift] : k.level === 2 ? [KEY.AltGr] : []
    out.push({ char: ch, keys: [...mods, { keysym: keysymOf(ch), code: k.code }] })
    if (scancodes && dead.includes(ch)) out.push({ char: '', keys: [KEY.Space] })
  }
  if (missing.size > 0) {
    throw new TypeError(`The ${LAYOUTS[layout].label} keyboard layout cannot type: ${[...missing].map(c => JSON.stringify(c)).join(' ')}`)
  }
  return out
}

/**
 * The bytes a serial line gets for `text`, one entry per character: UTF-8, line ends as a carriage return
 * (what the Enter key of a terminal sends).
 * @returns {Uint8Array[]}
 */
export function serialBytesFor (text) {
  const enc = new TextEncoder()
  return [...text.replace(/\r\n?/g, '\n')].map((ch) => enc.encode(ch === '\n' ? '\r' : ch))
}

/**
 * Types `items` one at a time through `send` (synchronous), waiting `intervalMs` between them, until done
 * or `signal` aborts. `onProgress(done, total)` after each. Resolves with `{ sent, total, cancelled }`.
 */
export async function typeAtPace (items, send, { intervalMs = 40, signal, onProgress } = {}) {
  const total = items.length
  let sent = 0
  for (const item of items) {
    if (signal?.aborted === true) return { sent, total, cancelled: true }
    send(item)
    sent++
    onProgress?.(sent, total)
    if (sent < total && signal?.aborted !== true) {
      await new Promise((resolve) => {
        const timer = setTimeout(done, intervalMs)
        function done () { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve() }
        signal?.addEventListener('abort', done, { once: true })
      })
    }
  }
  return { sent, total, cancelled: signal?.aborted === true && sent < total }
}
