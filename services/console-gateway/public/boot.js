// First thing the console page runs (it is the first import of app.js, so in the bundle its code runs
// before noVNC's, whose module waits on a video-decoder probe): it takes the token and starts both network
// requests at once — the `/info` look-up and the console WebSocket — so that the WebSocket handshake, the
// gateway's connection to the target and the look-up overlap instead of following one another.
//
// The link is `<gateway>/s/<sessionId>#<token>`: the token lives in the fragment, which browsers never send
// to a server. It is removed from the address bar (and so from history) here and presented only in headers:
// `Authorization` for the look-up and `Sec-WebSocket-Protocol` (`porthole.token.<token>`) for the socket.
// Every URL is derived from `location`, so the page works unchanged behind a proxy with a path prefix.

export const TOKEN_PROTOCOL = 'porthole.token.'
export const base = location.pathname.replace(/\/+$/, '')
export const storageKey = 'porthole-console:' + base

// The token: from the fragment on first load; from this tab's session storage after a reload.
let token = location.hash.length > 1 ? decodeURIComponent(location.hash.slice(1)) : ''
if (token !== '') {
  window.history.replaceState(null, '', location.pathname + location.search)
  try { window.sessionStorage.setItem(storageKey, token) } catch { /* storage disabled: reloads will not reconnect */ }
} else {
  try { token = window.sessionStorage.getItem(storageKey) ?? '' } catch { token = '' }
}
export const hasToken = token !== ''

/**
 * This tab's resume secret: made here, kept in this tab's session storage, offered with every socket
 * (`porthole.resume.<secret>`) and look-up (`X-Console-Resume`). A single-use session remembers the secret
 * of the viewer that used it, and lets that viewer, and nobody else holding the link, come back after its
 * socket dropped (a network blip, a gateway restart, a reload) within a short grace.
 */
export const RESUME_PROTOCOL = 'porthole.resume.'
let resume = ''
try { resume = window.sessionStorage.getItem(storageKey + ':resume') ?? '' } catch { /* storage disabled: this page only */ }
if (!/^[A-Za-z0-9_-]{22,128}$/.test(resume)) {
  const bytes = window.crypto.getRandomValues(new Uint8Array(32))
  resume = window.btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
  try { window.sessionStorage.setItem(storageKey + ':resume', resume) } catch { /* storage disabled: this page only */ }
}

/**
 * A look-up of the session at the gateway, `{ ok: true, info }` or `{ ok: false, reason, protocol? }` (the
 * protocol with `used`): `/info`, or with `wait` (seconds) its next change (`/info?wait=`), or with `method:
 * 'POST'` the page's own renewal (`/renew`).
 */
export function lookUp ({ wait = 0, version = '', renew = false } = {}) {
  if (!hasToken) return Promise.resolve({ ok: false, reason: 'invalid' })
  const url = base + (renew ? '/renew' : wait > 0 ? '/info?wait=' + wait + '&version=' + encodeURIComponent(version) : '/info')
  return fetch(url, { method: renew ? 'POST' : 'GET', headers: { authorization: 'Bearer ' + token, 'x-console-resume': resume }, cache: 'no-store', referrerPolicy: 'no-referrer' })
    .then(async (res) => {
      const body = await res.json()
      return res.ok ? { ok: true, info: body } : { ok: false, status: res.status, reason: body.reason ?? 'invalid', protocol: body.protocol }
    }, () => ({ ok: false, reason: 'unavailable' }))
}

/** The first `/info` answer, asked for at once. */
export const info = lookUp()

/**
 * The console socket, opened now. The viewer (noVNC, guacamole-common-js or xterm.js) is attached to it once it is
 * loaded: until a viewer sets `onmessage`, messages are held and then handed over in order, so nothing the
 * gateway sends early is lost. Both viewer subprotocols are offered; the gateway echoes the first (`binary`,
 * which a serial session uses too: raw bytes in binary frames) and relays by the session's own protocol.
 */
export const socket = hasToken ? openSocket() : undefined

/** A new console socket (the first, and each reconnect's). */
export function openSocket () {
  return holdingSocket((location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + base + '/ws', ['binary', 'guacamole', TOKEN_PROTOCOL + token, RESUME_PROTOCOL + resume])
}

/**
 * Resolves with the socket's close event. Listened for here, from the start: app.js runs only after noVNC's
 * module has settled (it awaits a decoder probe), and a socket the gateway refuses at once (e.g. 4004 used)
 * may close before that.
 */
export const socketClosed = socket === undefined
  ? new Promise(() => {})
  : new Promise((resolve) => { socket.addEventListener('close', resolve, { once: true }) })

/** Resolves with the first message's data once one arrives, or undefined when the socket closes first. */
export const firstMessage = socket === undefined
  ? Promise.resolve(undefined)
  : new Promise((resolve) => {
    socket.addEventListener('message', (e) => resolve(e.data), { once: true })
    socket.addEventListener('close', () => resolve(undefined), { once: true })
  })

function holdingSocket (url, protocols) {
  const ws = new WebSocket(url, protocols)
  ws.binaryType = 'arraybuffer'
  const held = []
  const hold = (e) => { held.push(e) }
  ws.addEventListener('message', hold)
  let handler = null
  let attached = false
  Object.defineProperty(ws, 'onmessage', {
    configurable: true,
    enumerable: true,
    get: () => handler,
    set: (fn) => {
      handler = fn
      if (attached) return
      attached = true
      ws.removeEventListener('message', hold)
      ws.addEventListener('message', (e) => { if (typeof handler === 'function') handler.call(ws, e) })
      // After the viewer's set-up has returned and before any later message (a task): replay, in order.
      queueMicrotask(() => { for (const e of held.splice(0)) if (typeof handler === 'function') handler.call(ws, e) })
    }
  })
  return ws
}
