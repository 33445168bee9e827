// The kiosk station page: carries out what machine.js decides. The link is `<api>/station/<id>#<secret>`:
// the secret is in the fragment, which browsers never send; it is removed from the address bar (kept in
// this tab's session storage for a reload) and sent only as `Authorization: Station <secret>`.
// Idle, the page shows the pool's pictures; a touch or a key asks for a desktop (POST …/sessions, the
// pool's hand-out) and shows its console page in a frame that fills the screen; it watches the session
// and returns to the pictures when it ends (Finish, idle timeout, maximum, revocation).
import { MESSAGES, initial, nextPicture, step } from './machine.js'

const base = location.pathname.replace(/\/+$/, '')
const storageKey = 'porthole-station:' + base
const PICTURE_MS = 8000
const WATCH_MS = 1000

let secret = location.hash.length > 1 ? decodeURIComponent(location.hash.slice(1)) : ''
if (secret !== '') {
  window.history.replaceState(null, '', location.pathname + location.search)
  try { window.sessionStorage.setItem(storageKey, secret) } catch { /* storage disabled: a reload needs the link again */ }
} else {
  try { secret = window.sessionStorage.getItem(storageKey) ?? '' } catch { secret = '' }
}

const $ = (id) => document.getElementById(id)
const ui = { status: $('status'), message: $('message'), hint: $('hint'), desk: $('desk'), frame: $('console'), finish: $('finish'), pics: [$('picture-a'), $('picture-b')] }

let state = initial()
let pictures = []
let pictureIndex = 0
let pictureTimer
let watchTimer
let laterTimer

/** A station request: the secret as a header, never in the URL; `{ status, body, retryAfter }`. */
async function call (method, path) {
  const res = await fetch(base + path, { method, headers: { authorization: 'Station ' + secret }, cache: 'no-store', referrerPolicy: 'no-referrer' })
  let body
  try { body = await res.json() } catch { body = undefined }
  return { status: res.status, body, retryAfter: Number(res.headers.get('retry-after') ?? '') || undefined }
}

/** 401 and 403 mean this station is no more (revoked, expired, a wrong link): nothing to retry. */
function refusal (r) {
  if (r.status !== 401 && r.status !== 403) return undefined
  const detail = r.body?.detail ?? 'This station is not set up. Please tell the staff.'
  return detail.charAt(0).toUpperCase() + detail.slice(1) + (detail.endsWith('.') ? '' : '.')
}

function dispatch (event) {
  const { state: next, effects } = step(state, event)
  state = next
  render()
  for (const e of effects) run(e)
}

function render () {
  const s = state.name
  document.body.dataset.state = s
  ui.message.textContent = state.message
  ui.hint.hidden = !(s === 'idle' && pictures.length > 0)
  if (s === 'idle' && pictures.length > 0) ui.message.textContent = ''
  ui.status.hidden = s === 'live'
  ui.status.classList.toggle('center', s !== 'idle')
  ui.status.classList.toggle('refused', s === 'refused')
  ui.finish.disabled = s !== 'live'
}

function run (e) {
  switch (e.do) {
    case 'handout': void handout(); break
    case 'retry': clearTimeout(laterTimer); laterTimer = setTimeout(() => dispatch({ type: 'retry' }), e.ms); break
    case 'later': clearTimeout(laterTimer); laterTimer = setTimeout(() => dispatch(e.event), e.ms); break
    case 'show': show(e); break
    case 'watch': watch(e.sessionId); break
    case 'finish': void finish(e.sessionId); break
    case 'hide': hide(); break
    case 'pictures': void loadInfo(); break
  }
}

async function handout () {
  let r
  try { r = await call('POST', '/sessions') } catch { dispatch({ type: 'error' }); return }
  const refused = refusal(r)
  if (refused !== undefined) { dispatch({ type: 'refused', message: refused }); return }
  if (r.status === 201) { dispatch({ type: 'desktop', sessionId: r.body.sessionId, url: r.body.url, expiresAt: r.body.expiresAt }); return }
  if (r.status === 503 || r.status === 429) { dispatch({ type: 'empty', retryAfterSeconds: r.retryAfter }); return }
  dispatch({ type: 'error' })
}

function show ({ url, sessionId }) {
  try { window.sessionStorage.setItem(storageKey + ':session', JSON.stringify({ sessionId, url })) } catch { /* a reload ends the session instead */ }
  stopPictures()
  // `?kiosk=1`: the console page leaves out its Disconnect button; Finish, here, is how a kiosk user ends.
  const framed = new URL(url)
  framed.searchParams.set('kiosk', '1')
  ui.frame.src = framed.href
  ui.desk.hidden = false
  ui.frame.focus()
}

function hide () {
  clearInterval(watchTimer)
  try { window.sessionStorage.removeItem(storageKey + ':session') } catch { /* nothing kept */ }
  ui.desk.hidden = true
  // The frame's page goes at once (its socket closes with it), not when the next desktop comes.
  ui.frame.src = 'about:blank'
}

/** Asks every WATCH_MS whether the session still lives; its end (idle, maximum, revoked, the VM gone) returns to the pictures. */
function watch (sessionId) {
  clearInterval(watchTimer)
  let asking = false
  watchTimer = setInterval(async () => {
    if (asking) return
    asking = true
    try {
      const r = await call('GET', '/sessions/' + sessionId)
      const refused = refusal(r)
      if (refused !== undefined) dispatch({ type: 'refused', message: refused })
      else if (r.status === 200 && r.body.state === 'ended') dispatch({ type: 'ended', sessionId, reason: r.body.reason })
      else if (r.status === 404) dispatch({ type: 'ended', sessionId, reason: 'gone' })
    } catch { /* the network blinked: ask again next time */ } finally { asking = false }
  }, WATCH_MS)
}

async function finish (sessionId) {
  try { await call('POST', '/sessions/' + sessionId + '/finish') } catch { /* the session ends at its idle timeout anyway */ }
  dispatch({ type: 'ended', sessionId })
}

function stopPictures () { clearInterval(pictureTimer); pictureTimer = undefined }

function showPicture (i) {
  const img = ui.pics[i % 2]
  const other = ui.pics[(i + 1) % 2]
  img.src = pictures[i]
  img.classList.add('shown')
  other.classList.remove('shown')
}

function startPictures () {
  stopPictures()
  if (pictures.length === 0) return
  showPicture(pictureIndex)
  if (pictures.length > 1) pictureTimer = setInterval(() => { pictureIndex = nextPicture(pictureIndex, pictures.length); showPicture(pictureIndex) }, PICTURE_MS)
}

/** The pool's pictures (re-read each time the page returns to them) and, after a reload, the session still under way. */
async function loadInfo () {
  if (secret === '') { dispatch({ type: 'refused', message: 'This page needs its station link (with the part after #). Please tell the staff.' }); return }
  let r
  try { r = await call('GET', '/info') } catch { r = { status: 0 } }
  const refused = refusal(r)
  if (refused !== undefined) { dispatch({ type: 'refused', message: refused }); return }
  if (r.status !== 200) { clearTimeout(laterTimer); laterTimer = setTimeout(() => { void loadInfo() }, 5000); return }
  pictures = r.body.attract
  document.title = r.body.name
  if (state.name === 'idle') startPictures()
  render()
  const cur = r.body.session
  if (cur !== undefined && state.name === 'idle') {
    let kept
    try { kept = JSON.parse(window.sessionStorage.getItem(storageKey + ':session') ?? 'null') } catch { kept = null }
    // A reload during a session: show it again; a session this tab never saw is ended, not shown.
    if (kept?.sessionId === cur.sessionId) {
      state = { name: 'starting', message: MESSAGES.starting }
      dispatch({ type: 'desktop', sessionId: cur.sessionId, url: kept.url, expiresAt: cur.expiresAt })
    } else {
      void call('POST', '/sessions/' + cur.sessionId + '/finish').catch(() => {})
    }
  }
}

const touched = (e) => {
  if (state.name !== 'idle' && state.name !== 'failed') return
  e.preventDefault()
  dispatch({ type: 'touch' })
}
document.addEventListener('pointerdown', touched)
document.addEventListener('keydown', touched)
ui.finish.addEventListener('click', () => dispatch({ type: 'finish' }))
render()
void loadInfo()
