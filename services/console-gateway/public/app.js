// Porthole console page: the viewer side. boot.js (imported first) has taken the token from the URL
// fragment and started the `/info` look-up and the console WebSocket; this module attaches a viewer to that
// socket — noVNC for `vnc`, guacamole-common-js (loaded on demand) for `guacamole`, an xterm.js terminal
// (serial.js, loaded on demand) for `serial` — and shows the session.
// At build time (scripts/bundle.mjs) this file, boot.js and noVNC become one minified module,
// guacamole-common-js a second one and serial.js with xterm.js a third; unbundled, the relative imports
// below are served as they are.
import { base, firstMessage, hasToken, info as infoAnswer, socket, socketClosed, storageKey } from './boot.js'
import RFB from './novnc/core/rfb.js'

const $ = (id) => document.getElementById(id)

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
const CODES = { 4000: 'invalid', 4001: 'expired', 4002: 'revoked', 4003: 'replaced', 4004: 'used', 4005: 'unreachable', 4006: 'target-auth', 4007: 'idle', 4008: 'target-closed', 1001: 'shutdown', 1013: 'unavailable' }

let ended = false
let userDisconnected = false
let countdown

function setState (text) { $('state').textContent = text }

function end (reasonKey, fallback) {
  if (ended) return
  ended = true
  if (countdown !== undefined) window.clearInterval(countdown)
  $('cad').disabled = true
  $('disconnect').disabled = true
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

function onSocketClose (e) {
  end(CODES[e.code] ?? e.reason, e.code === 1006 ? 'The connection to the console service was lost.' : undefined)
}

function startCountdown (expiresAt, serverNow) {
  const skew = Date.parse(serverNow) - Date.now()
  const end = Date.parse(expiresAt)
  const tick = () => {
    const left = Math.max(0, Math.round((end - (Date.now() + skew)) / 1000))
    const h = Math.floor(left / 3600)
    const m = Math.floor((left % 3600) / 60)
    const s = left % 60
    $('left').textContent = (h > 0 ? h + ':' + String(m).padStart(2, '0') : String(m)) + ':' + String(s).padStart(2, '0') + ' left'
    $('left').classList.toggle('low', left < 300)
  }
  tick()
  countdown = window.setInterval(tick, 1000)
}

function startVnc (screen, ws) {
  const rfb = new RFB(screen, ws, {})
  rfb.scaleViewport = true
  rfb.background = '#000'
  rfb.addEventListener('connect', () => {
    setState('Connected')
    document.body.dataset.connected = 'true'
    $('cad').disabled = false
    $('disconnect').disabled = false
    rfb.focus()
  })
  rfb.addEventListener('disconnect', () => window.setTimeout(() => end(undefined), 200))
  $('cad').addEventListener('click', () => { rfb.sendCtrlAltDel(); rfb.focus() })
  $('disconnect').addEventListener('click', () => { userDisconnected = true; rfb.disconnect() })
}

async function startGuacamole (screen, ws) {
  const { default: Guacamole } = await import('./guacamole/guacamole-common.js')
  // guacamole-common-js opens its own socket as `new WebSocket(url + '?' + data, 'guacamole')`. For the
  // duration of that one call, a constructor that returns the socket boot.js opened stands in.
  const Native = window.WebSocket
  window.WebSocket = function PortholeSocket () { return ws }
  const tunnel = new Guacamole.WebSocketTunnel(base + '/ws')
  const client = new Guacamole.Client(tunnel)
  const display = client.getDisplay()
  const el = display.getElement()
  screen.appendChild(el)
  try { client.connect('') } finally { window.WebSocket = Native }
  client.onerror = (status) => end('unreachable', status?.message)
  client.onstatechange = (state) => {
    if (state === 3) {
      setState('Connected')
      document.body.dataset.connected = 'true'
      $('cad').disabled = false
      $('disconnect').disabled = false
    }
  }
  const fit = () => {
    const w = display.getWidth()
    const h = display.getHeight()
    if (w > 0 && h > 0) display.scale(Math.min(screen.clientWidth / w, screen.clientHeight / h))
  }
  display.onresize = fit
  window.addEventListener('resize', fit)
  const mouse = new Guacamole.Mouse(el)
  const sendMouse = (e) => client.sendMouseState(e.state, true)
  if (typeof mouse.onEach === 'function') mouse.onEach(['mousedown', 'mouseup', 'mousemove'], sendMouse)
  else { mouse.onmousedown = mouse.onmouseup = mouse.onmousemove = (state) => client.sendMouseState(state, true) }
  const keyboard = new Guacamole.Keyboard(document)
  keyboard.onkeydown = (k) => { client.sendKeyEvent(1, k) }
  keyboard.onkeyup = (k) => { client.sendKeyEvent(0, k) }
  $('cad').addEventListener('click', () => {
    const keys = [0xffe3, 0xffe9, 0xffff] // Control_L, Alt_L, Delete
    for (const k of keys) client.sendKeyEvent(1, k)
    for (const k of keys.reverse()) client.sendKeyEvent(0, k)
  })
  $('disconnect').addEventListener('click', () => { userDisconnected = true; client.disconnect(); end(undefined) })
}

async function startSerialConsole (screen, ws) {
  const { startSerial } = await import('./serial.js')
  // Ctrl-Alt-Del means nothing to a serial line.
  $('cad').hidden = true
  startSerial(screen, ws, {
    connected: () => {
      setState('Connected')
      document.body.dataset.connected = 'true'
      $('disconnect').disabled = false
    },
    disconnect: (close) => {
      $('disconnect').addEventListener('click', () => { userDisconnected = true; close(); end(undefined) })
    }
  })
}

async function main () {
  $('fullscreen').addEventListener('click', () => {
    if (document.fullscreenElement) document.exitFullscreen()
    else document.documentElement.requestFullscreen().catch(() => {})
  })
  if (!hasToken || socket === undefined) { end('invalid'); return }
  socketClosed.then(onSocketClose)
  const answer = await infoAnswer
  let protocol
  if (answer.ok) {
    const info = answer.info
    document.title = info.serverName + ' — console'
    $('name').textContent = info.serverName
    startCountdown(info.expiresAt, info.now)
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
  else startVnc(screen, socket)
}

main().catch(() => end(undefined, 'The console could not start in this browser.'))
