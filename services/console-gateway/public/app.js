// Porthole console page: the viewer side. boot.js (imported first) has taken the token from the URL
// fragment and started the `/info` look-up and the console WebSocket; this module attaches a viewer to that
// socket — noVNC for `vnc`, guacamole-common-js (loaded on demand) for `guacamole`, an xterm.js terminal
// (serial.js, loaded on demand) for `serial` — and shows the session.
// At build time (scripts/bundle.mjs) this file, boot.js and noVNC become one minified module,
// guacamole-common-js a second one and serial.js with xterm.js a third; unbundled, the relative imports
// below are served as they are. (Past 300 lines: the three viewers share the page's state — its end, reconnect
// and controls — in one module; keymap.js and serial.js hold what stands apart.)
import { base, firstMessage, hasToken, info as infoAnswer, lookUp, openSocket, socket, socketClosed, storageKey } from './boot.js'
import RFB from './novnc/core/rfb.js'
import { COMBOS, KEY, LAYOUTS, serialBytesFor, strokesFor, typeAtPace } from './keymap.js'
// The gateway's close codes, from their one definition (packages/shared's contracts, compiled).
import { consoleCloseReason } from './shared/console-close.js'

const $ = (id) => document.getElementById(id)
// In a kiosk station's frame (`?kiosk=1`) the station's own Finish ends the desktop; a Disconnect beside it
// would leave the kiosk on a dead console until its idle timeout.
if (new window.URLSearchParams(location.search).get('kiosk') === '1') $('disconnect').hidden = true

const REASONS = {
  invalid: 'This console link is not valid. Open the console again from your control panel.',
  expired: 'This console session has expired. Open the console again from your control panel.',
  revoked: 'This console session was ended by an administrator.',
  replaced: 'The console was opened in another window, so this one was disconnected.',
  used: 'This console link could be used once and has been used already. Open the console again from your control panel.',
  unreachable: 'The server’s console could not be reached. The server may be off or its console unavailable.',
  'target-auth': 'The server’s console refused the connection.',
  idle: 'The console was closed after a period without input.',
  'target-closed': 'The server closed the console connection.',
  shutdown: 'The console service is restarting. Open the console again.',
  unavailable: 'The console service is temporarily unavailable. Try again shortly.'
}

let ended = false
let userDisconnected = false
let countdown
let pasting

function setState (text) { $('state').textContent = text }

function end (reasonKey, fallback) {
  if (ended) return
  ended = true
  if (countdown !== undefined) window.clearInterval(countdown)
  $('renew').hidden = true
  $('closing').hidden = true
  $('cad').disabled = true
  $('disconnect').disabled = true
  $('paste-open').disabled = true
  $('paste-go').disabled = true
  for (const b of document.querySelectorAll('#keymenu button, #keybar button')) b.disabled = true
  pasting?.abort()
  const text = userDisconnected ? 'You disconnected from the console.' : (REASONS[reasonKey] ?? fallback ?? 'The console connection was closed.')
  setState('Disconnected')
  document.body.dataset.closeReason = userDisconnected ? 'user' : (reasonKey ?? 'closed')
  const m = $('message')
  m.textContent = text
  m.hidden = false
  if (reasonKey === 'expired' || reasonKey === 'revoked' || reasonKey === 'used' || reasonKey === 'invalid') {
    try { window.sessionStorage.removeItem(storageKey) } catch { /* nothing to remove */ }
  }
}

/** Ends after which the page does not come back: the session is over, or is somebody else's now. */
const FINAL = new Set(['invalid', 'expired', 'revoked', 'replaced', 'used', 'target-auth', 'idle'])
/** Set by a viewer that can take a new socket (VNC, guacamole, serial): the page then reconnects when its socket drops. */
let resumeWith
/** Reconnect attempts since the console last worked (the backoff grows with them). */
let attempts = 0
/** Whether the console ever worked on this page: one that never did says why at once instead of retrying. */
let everConnected = false

function onSocketClose (e) {
  const reason = consoleCloseReason(e.code) ?? (e.reason === '' ? undefined : e.reason)
  if (ended) return
  if (userDisconnected || resumeWith === undefined || !everConnected || FINAL.has(reason)) {
    end(reason, e.code === 1006 ? 'The connection to the console service was lost.' : undefined)
    return
  }
  void reconnect(reason)
}

const WHY = {
  shutdown: 'the console service restarted',
  unavailable: 'the console service was busy',
  unreachable: 'the server’s console did not answer',
  'target-closed': 'the server closed its console'
}

/**
 * The socket dropped (a network blip, a gateway restart, the server rebooting): try again, waiting 0.5 s,
 * 1 s, 2 s … up to 15 s between attempts, for as long as the session's look-up says it is valid, and say so
 * on screen. A single-use session lets this tab back in by its resume secret (boot.js).
 */
async function reconnect (reason) {
  document.body.dataset.connected = 'false'
  document.body.dataset.reconnecting = 'true'
  const m = $('message')
  while (!ended) {
    attempts++
    const wait = Math.min(15_000, 500 * 2 ** (attempts - 1))
    setState('Reconnecting…')
    m.textContent = 'The connection to the console was lost' + (WHY[reason] === undefined ? '' : ' (' + WHY[reason] + ')') + '. Reconnecting in ' + Math.ceil(wait / 1000) + ' s (attempt ' + attempts + ')…'
    m.hidden = false
    await new Promise((resolve) => window.setTimeout(resolve, wait))
    if (ended) return
    const r = await lookUp()
    if (!r.ok && r.status !== undefined) { end(r.reason); return } // expired, revoked, used by another
    if (!r.ok) continue // the console service does not answer yet
    setLifetime(r.info)
    const ws = openSocket()
    const opened = await new Promise((resolve) => {
      ws.addEventListener('open', () => resolve(true), { once: true })
      ws.addEventListener('close', () => resolve(false), { once: true })
    })
    if (ended) { ws.close(); return }
    if (!opened) continue
    ws.addEventListener('close', onSocketClose, { once: true })
    m.hidden = true
    document.body.dataset.reconnecting = 'false'
    document.body.dataset.reconnects = String(Number(document.body.dataset.reconnects ?? '0') + 1)
    resumeWith(ws)
    return
  }
}

/** The page renews a renewable session (the "Keep open" button) in its last this many seconds, as the gateway allows. */
const RENEW_WINDOW_SECONDS = 300

/**
 * The countdown, which follows the session: `follow` long-polls the gateway's look-up (`/info?wait=`), which
 * answers at once when the session is renewed (through the API or from this page) and every 25 s otherwise.
 * A renewable session shows "Keep open" in its last five minutes, while renewing can still add time.
 */
const lifetime = { expiresAt: 0, maxExpiresAt: Infinity, skew: 0, renewable: false, version: '' }

function setLifetime (info) {
  lifetime.skew = Date.parse(info.now) - Date.now()
  lifetime.expiresAt = Date.parse(info.expiresAt)
  lifetime.maxExpiresAt = info.maxExpiresAt === undefined ? Infinity : Date.parse(info.maxExpiresAt)
  lifetime.renewable = info.renewable === true
  lifetime.version = info.version ?? ''
  document.body.dataset.expiresAt = info.expiresAt
  showWatchers(info.watchers)
  tick()
}

/** The owner's page: who watches through a share now (the look-up lists them; a share's viewer is not told). */
function showWatchers (watchers) {
  const el = $('watchers')
  if (!Array.isArray(watchers) || watchers.length === 0) { el.hidden = true; el.textContent = ''; document.body.dataset.watchers = '0'; return }
  const names = watchers.map((w) => (w.label ?? 'someone') + (w.viewOnly ? ' (view only)' : ''))
  el.textContent = 'Watching: ' + names.join(', ')
  el.hidden = false
  document.body.dataset.watchers = String(watchers.length)
}

function tick () {
  const left = Math.max(0, Math.round((lifetime.expiresAt - (Date.now() + lifetime.skew)) / 1000))
  const h = Math.floor(left / 3600)
  const m = Math.floor((left % 3600) / 60)
  const s = left % 60
  $('left').textContent = (h > 0 ? h + ':' + String(m).padStart(2, '0') : String(m)) + ':' + String(s).padStart(2, '0') + ' left'
  $('left').classList.toggle('low', left < RENEW_WINDOW_SECONDS)
  const canRenew = !ended && lifetime.renewable && left > 0 && left <= RENEW_WINDOW_SECONDS && lifetime.maxExpiresAt > lifetime.expiresAt
  $('renew').hidden = !canRenew
  // The warning, in the last five minutes: with "Keep open" where the page may renew.
  $('closing').hidden = ended || left === 0 || left > RENEW_WINDOW_SECONDS
  $('closing').textContent = canRenew ? 'Closing soon:' : 'Closing soon'
  $('left').title = canRenew ? 'This console closes soon: Keep open gives it more time' : 'time left'
}

function startCountdown (info) {
  setLifetime(info)
  countdown = window.setInterval(tick, 1000)
  $('renew').addEventListener('click', async () => {
    $('renew').disabled = true
    const r = await lookUp({ renew: true })
    $('renew').disabled = false
    if (r.ok) setLifetime(r.info)
    else $('left').title = 'The console could not be renewed (' + r.reason + ')'
  })
  void follow()
}

async function follow () {
  while (!ended) {
    const r = await lookUp({ wait: 25, version: lifetime.version })
    if (ended) return
    if (r.ok) setLifetime(r.info)
    else if (r.status !== undefined) return // expired, revoked: the socket's close says so
    else await new Promise((resolve) => window.setTimeout(resolve, 2000)) // the gateway is not answering: ask again shortly
  }
}

/** Choices the page remembers in this browser (scaling, paste layout and pace). */
const prefs = {
  get: (k, d) => { try { return window.localStorage.getItem('porthole-console.' + k) ?? d } catch { return d } },
  set: (k, v) => { try { window.localStorage.setItem('porthole-console.' + k, v) } catch { /* storage disabled */ } }
}

/**
 * Wires the key menu, the on-screen key bar, "Paste as keys" and the view choice to a viewer. `v.key(key,
 * down)` presses or releases one key (keymap.js's `{keysym, code}`); `v.strokes(text, layout)` or, for a
 * serial line, `v.items(text)` with `v.send(item)` say what pasting types; `v.latch(name, on)` (serial)
 * takes the place of holding Ctrl or Alt down; `v.scale(mode)` applies fit / actual / remote.
 */
function attachControls (v) {
  const press = (keys) => {
    for (const k of keys) v.key(k, true)
    for (const k of [...keys].reverse()) v.key(k, false)
  }
  const combo = (keys) => { press(keys); v.focus() }
  const menu = $('keymenu')
  for (const [id, c] of Object.entries(COMBOS)) {
    const b = document.createElement('button')
    b.type = 'button'
    b.textContent = c.label
    b.dataset.combo = id
    b.disabled = true
    b.addEventListener('click', () => { combo(c.keys); $('keys').open = false })
    menu.appendChild(b)
  }

  // The key bar. Ctrl and Alt stay down (aria-pressed) until pressed again, so that a phone's keyboard or
  // another bar key combines with them.
  const setMod = (b, on) => {
    b.setAttribute('aria-pressed', String(on))
    if (v.latch !== undefined) v.latch(b.dataset.mod, on)
    else v.key(KEY[b.dataset.mod], on)
  }
  const mods = [...document.querySelectorAll('#keybar button[data-mod]')]
  for (const b of document.querySelectorAll('#keybar button')) {
    b.disabled = true
    if (b.dataset.key !== undefined) b.addEventListener('click', () => { press([KEY[b.dataset.key]]); v.focus() })
    else b.addEventListener('click', () => { setMod(b, b.getAttribute('aria-pressed') !== 'true'); v.focus() })
  }
  const unlatch = () => { for (const b of mods) if (b.getAttribute('aria-pressed') === 'true') setMod(b, false) }

  // Paste as keys.
  const panel = $('paste')
  const layout = $('paste-layout')
  for (const [id, l] of Object.entries(LAYOUTS)) layout.add(new window.Option(l.label, id))
  layout.value = LAYOUTS[prefs.get('layout', 'us')] === undefined ? 'us' : prefs.get('layout', 'us')
  layout.addEventListener('change', () => prefs.set('layout', layout.value))
  const pace = $('paste-pace')
  pace.value = prefs.get('pace', '50')
  if (pace.value === '') pace.value = '50'
  pace.addEventListener('change', () => prefs.set('pace', pace.value))
  if (v.items !== undefined) layout.parentElement.hidden = true // a serial line takes characters, not keys
  const status = (text) => { $('paste-status').textContent = text }
  const show = (open) => {
    panel.hidden = !open
    $('paste-open').setAttribute('aria-expanded', String(open))
    if (open) $('paste-text').focus()
    else v.focus()
  }
  $('paste-open').addEventListener('click', () => show(panel.hidden))
  $('paste-close').addEventListener('click', () => show(false))
  $('paste-cancel').addEventListener('click', () => pasting?.abort())
  $('paste-go').addEventListener('click', async () => {
    if (pasting !== undefined) return
    const text = $('paste-text').value
    if (text === '') { status('There is nothing to type.'); return }
    let items
    try { items = v.items !== undefined ? v.items(text) : v.strokes(text, layout.value) } catch (e) { status(e.message); return }
    const send = v.send ?? ((s) => press(s.keys))
    const progress = $('paste-progress')
    progress.max = items.length
    progress.value = 0
    pasting = new AbortController()
    $('paste-go').disabled = true
    $('paste-cancel').disabled = false
    document.body.dataset.paste = 'typing'
    status(`Typing… 0 of ${items.length}`)
    const r = await typeAtPace(items, send, {
      intervalMs: Number(pace.value),
      signal: pasting.signal,
      onProgress: (n, total) => { progress.value = n; status(`Typing… ${n} of ${total}`) }
    })
    pasting = undefined
    $('paste-go').disabled = ended
    $('paste-cancel').disabled = true
    document.body.dataset.paste = r.cancelled ? 'cancelled' : 'done'
    status(r.cancelled ? `Stopped after ${r.sent} of ${r.total} keys.` : `Typed ${r.total} ${r.total === 1 ? 'key' : 'keys'}.`)
  })

  // The view: fit to the window, actual size, or ask the server to take the window's size.
  const scale = $('scale')
  if (v.scale !== undefined) {
    scale.value = prefs.get('scale', 'fit')
    if (scale.value === '') scale.value = 'fit'
    v.scale(scale.value)
    scale.addEventListener('change', () => { prefs.set('scale', scale.value); v.scale(scale.value) })
  }

  return {
    enable: () => {
      if (ended) return
      $('paste-open').disabled = false
      for (const b of document.querySelectorAll('#keymenu button, #keybar button')) b.disabled = false
    },
    combo,
    unlatch
  }
}

function startVnc (screen, first, share) {
  // A view-only share: the page sends no input (and the gateway would drop it), and offers no keys.
  const viewOnly = share?.viewOnly === true
  if (viewOnly) {
    for (const id of ['cad', 'keys', 'paste-open', 'keybar']) $(id).hidden = true
    document.body.dataset.viewOnly = 'true'
  }
  let rfb
  let mode = 'fit'
  const applyScale = () => {
    rfb.scaleViewport = mode !== 'actual'
    rfb.resizeSession = mode === 'remote'
    screen.dataset.scale = mode
  }
  const controls = attachControls({
    key: (k, down) => rfb.sendKey(k.keysym, k.code, down),
    // noVNC sends a key's position too when the server takes QEMU's extended key event (keymap.js).
    strokes: (text, layout) => strokesFor(text, layout, { scancodes: rfb._qemuExtKeyEventSupported === true }),
    scale: (m) => { mode = m; if (rfb !== undefined) applyScale() },
    focus: () => rfb.focus()
  })
  // A noVNC client per socket: the first, then one for each reconnect, on the same page and controls.
  const attach = (ws) => {
    rfb = new RFB(screen, ws, { shared: true })
    rfb.background = '#000'
    rfb.viewOnly = viewOnly
    applyScale()
    rfb.addEventListener('connect', () => {
      attempts = 0
      everConnected = true
      setState(share === undefined ? 'Connected' : viewOnly ? 'Watching (view only)' : 'Connected (shared)')
      document.body.dataset.connected = 'true'
      $('cad').disabled = viewOnly
      $('disconnect').disabled = false
      if (!viewOnly) controls.enable()
      rfb.focus()
    })
  }
  attach(first)
  resumeWith = attach
  $('cad').addEventListener('click', () => controls.combo(COMBOS['ctrl-alt-del'].keys))
  $('disconnect').addEventListener('click', () => { userDisconnected = true; rfb.disconnect() })
}

async function startGuacamole (screen, first) {
  const { default: Guacamole } = await import('./guacamole/guacamole-common.js')
  let client
  let display
  let el
  let mode = 'fit'
  const fit = () => {
    const w = display.getWidth()
    const h = display.getHeight()
    if (mode === 'actual') display.scale(1)
    else if (w > 0 && h > 0) display.scale(Math.min(screen.clientWidth / w, screen.clientHeight / h))
  }
  // Asks the server for the window's size (RDP and some VNC servers follow it; others keep theirs, which is then fitted).
  const askSize = () => { if (mode === 'remote') client.sendSize(screen.clientWidth, screen.clientHeight) }
  window.addEventListener('resize', () => { askSize(); fit() })
  const controls = attachControls({
    key: (k, down) => client.sendKeyEvent(down ? 1 : 0, k.keysym),
    // guacd's VNC client sends keysyms only.
    strokes: (text, layout) => strokesFor(text, layout, { scancodes: false }),
    scale: (m) => { mode = m; screen.dataset.scale = m; if (client !== undefined) { askSize(); fit() } },
    focus: () => el.focus()
  })
  // A Guacamole client per socket: the first, then one for each reconnect (its display replaces the last one),
  // on the same page and controls.
  const attach = (ws) => {
    // guacamole-common-js opens its own socket as `new WebSocket(url + '?' + data, 'guacamole')`. For the
    // duration of that one call, a constructor that returns the socket boot.js opened stands in.
    const Native = window.WebSocket
    window.WebSocket = function PortholeSocket () { return ws }
    const tunnel = new Guacamole.WebSocketTunnel(base + '/ws')
    client = new Guacamole.Client(tunnel)
    display = client.getDisplay()
    el?.remove()
    el = display.getElement()
    screen.appendChild(el)
    try { client.connect('') } finally { window.WebSocket = Native }
    // An error guacd reports on a live socket ends the page; a socket that closes is onSocketClose's to judge
    // (it reconnects once the console has worked), so the tunnel's own error for that close is not the end.
    client.onerror = (status) => { if (ws.readyState === WebSocket.OPEN) end('unreachable', status?.message) }
    client.onstatechange = (state) => {
      if (state === 3) {
        attempts = 0
        everConnected = true
        setState('Connected')
        document.body.dataset.connected = 'true'
        $('cad').disabled = false
        $('disconnect').disabled = false
        controls.enable()
        el.focus()
      }
    }
    display.onresize = fit
    const mouse = new Guacamole.Mouse(el)
    const sendMouse = (e) => client.sendMouseState(e.state, true)
    if (typeof mouse.onEach === 'function') mouse.onEach(['mousedown', 'mouseup', 'mousemove'], sendMouse)
    else { mouse.onmousedown = mouse.onmouseup = mouse.onmousemove = (state) => client.sendMouseState(state, true) }
    // The keyboard listens on the display (focusable, focused once connected and on each click), not on the
    // document: guacamole-common-js listens in the capture phase and would take the keys typed into the page's
    // own controls, such as the paste box.
    el.tabIndex = 0
    el.setAttribute('aria-label', 'Server screen')
    el.addEventListener('mousedown', () => el.focus())
    const keyboard = new Guacamole.Keyboard(el)
    keyboard.onkeydown = (k) => { client.sendKeyEvent(1, k) }
    keyboard.onkeyup = (k) => { client.sendKeyEvent(0, k) }
  }
  attach(first)
  resumeWith = attach
  $('cad').addEventListener('click', () => controls.combo(COMBOS['ctrl-alt-del'].keys))
  $('disconnect').addEventListener('click', () => { userDisconnected = true; client.disconnect(); end(undefined) })
}

async function startSerialConsole (screen, first) {
  const { startSerial } = await import('./serial.js')
  let ws = first
  // Ctrl-Alt-Del and the key menu mean nothing to a serial line, nor does scaling a terminal fitted to the window.
  $('cad').hidden = true
  $('keys').hidden = true
  $('scale-box').hidden = true
  const send = (bytes) => { if (ws.readyState === WebSocket.OPEN) ws.send(bytes) }
  const enc = new TextEncoder()
  const SEQ = { Escape: '\x1b', Tab: '\t', Up: '\x1b[A', Down: '\x1b[B', Right: '\x1b[C', Left: '\x1b[D' }
  const latched = new Set()
  const controls = attachControls({
    // The key bar's keys as a terminal sends them; Ctrl and Alt (latched) apply to what is typed next.
    key: (k, down) => {
      if (!down) return
      const name = Object.keys(KEY).find((n) => KEY[n] === k)
      if (name === 'Control' || name === 'Alt') return
      if (SEQ[name] !== undefined) send(enc.encode(SEQ[name]))
    },
    latch: (name, on) => { if (on) latched.add(name); else latched.delete(name) },
    items: (text) => serialBytesFor(text),
    send: (bytes) => send(bytes),
    focus: () => term?.focus()
  })
  const { term, attach } = startSerial(screen, ws, {
    // Ctrl latched: a letter becomes its control character; Alt latched: ESC before it (as xterm sends Alt).
    filter: (d) => {
      if (latched.size === 0) return d
      let out = d
      if (latched.has('Control') && d.length === 1 && /[@-_a-z?]/i.test(d)) out = d === '?' ? '\x7f' : String.fromCharCode(d.toUpperCase().charCodeAt(0) & 0x1f)
      if (latched.has('Alt')) out = '\x1b' + out
      controls.unlatch()
      return out
    },
    connected: () => {
      setState('Connected')
      document.body.dataset.connected = 'true'
      $('disconnect').disabled = false
      controls.enable()
    },
    // A line that spoke worked: from then on, a dropped socket is reconnected (one whose bridge never
    // answered is closed by the gateway with the reason, which the page says at once).
    lineSpoke: () => { attempts = 0; everConnected = true },
    disconnect: (close) => {
      $('disconnect').addEventListener('click', () => { userDisconnected = true; close(); end(undefined) })
    }
  })
  resumeWith = (next) => { ws = next; attach(next) }
}

async function main () {
  $('fullscreen').addEventListener('click', () => {
    if (document.fullscreenElement) document.exitFullscreen()
    else document.documentElement.requestFullscreen().catch(() => {})
  })
  // In full screen, the Keyboard Lock API (Chromium-based browsers) hands Esc, Alt-Tab, the Windows key and
  // the like to the page, so they reach the server; holding Esc still leaves full screen.
  document.addEventListener('fullscreenchange', () => {
    const kb = window.navigator.keyboard
    if (document.fullscreenElement) kb?.lock?.().catch(() => {})
    else kb?.unlock?.()
    $('fullscreen').textContent = document.fullscreenElement ? 'Leave full screen' : 'Full screen'
  })
  if (!hasToken || socket === undefined) { end('invalid'); return }
  socketClosed.then(onSocketClose)
  const answer = await infoAnswer
  let protocol
  let share
  if (answer.ok) {
    share = answer.info.share
    const info = answer.info
    document.title = info.serverName + ' — console'
    $('name').textContent = info.serverName
    startCountdown(info)
    protocol = info.protocol
  } else if (answer.reason === 'used') {
    // A single-use link: the look-up and this page's own socket raced, and the socket may be the one that
    // used the link. The socket decides: the gateway sends it nothing unless it is the session's viewer
    // (else it closes it with 4004, which onSocketClose shows). The look-up names the session's protocol
    // to the token's holder; without it, text frames are guacamole's, binary RFB. A serial line may be
    // silent, so a serial session starts at once (a 4004 close still shows why).
    protocol = answer.protocol
    if (protocol !== 'serial') {
      const first = await firstMessage
      if (first === undefined) return
      protocol ??= typeof first === 'string' ? 'guacamole' : 'vnc'
    }
  } else {
    end(answer.reason)
    socket.close()
    return
  }
  const screen = $('screen')
  if (protocol === 'guacamole') await startGuacamole(screen, socket)
  else if (protocol === 'serial') await startSerialConsole(screen, socket)
  else startVnc(screen, socket, share)
}

main().catch(() => end(undefined, 'The console could not start in this browser.'))
