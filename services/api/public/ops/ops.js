// The operators' dashboard: plain DOM, every value written as text (never as HTML: agents' messages and
// names come from outside). Reads /ops/api/*, changes with the session's CSRF token, live through live.js.
import { subscribe } from './live.js'

const $ = (sel, root = document) => root.querySelector(sel)
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)]
let session
let tab = 'jobs'
let selectedJob
const servers = new Map()
const tenants = new Map()

function el (tag, props = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue
    if (k === 'class') e.className = v
    else if (k === 'text') e.textContent = String(v)
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
    else if (k === 'dataset') Object.assign(e.dataset, v)
    else e.setAttribute(k, v)
  }
  for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : document.createTextNode(String(c)))
  return e
}

async function api (method, path, body) {
  const headers = {}
  if (method !== 'GET') headers['x-csrf-token'] = session?.csrf ?? ''
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) })
  if (res.status === 401 && path !== '/ops/api/session') { showLogin('Your session ended: log in again.'); throw new Error('logged out') }
  const text = await res.text()
  const data = text === '' ? undefined : JSON.parse(text)
  if (!res.ok) throw new Error(data?.detail ?? `HTTP ${res.status}`)
  return data
}

function flash (msg, bad = false) {
  const f = $('#flash')
  f.textContent = msg
  f.classList.toggle('bad', bad)
  f.hidden = false
  clearTimeout(flash.t)
  flash.t = setTimeout(() => { f.hidden = true }, 6000)
}

const short = (id) => typeof id === 'string' ? id.slice(0, 8) : ''
function ago (iso) {
  if (typeof iso !== 'string') return ''
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000)
  const abs = Math.abs(s)
  const t = abs < 90 ? `${abs} s` : abs < 5400 ? `${Math.round(abs / 60)} min` : abs < 129600 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} d`
  return s < 0 ? `in ${t}` : `${t} ago`
}
const time = (iso) => el('time', { datetime: iso, title: iso, text: ago(iso) })
const stateBadge = (s) => el('span', { class: `state ${s}`, text: s })
const tenantName = (id) => tenants.get(id)?.name ?? short(id)
function fill (tbody, rows, emptyEl) { tbody.replaceChildren(...rows); if (emptyEl) emptyEl.hidden = rows.length > 0 }

// ---- login ----
function showLogin (message = '') {
  $('#app').hidden = true
  $('#login').hidden = false
  $('#login-error').textContent = message
  stopLive?.()
  stopLive = undefined
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault()
  const key = $('#login-key').value.trim()
  $('#login-error').textContent = ''
  const res = await fetch('/ops/login', { method: 'POST', headers: { 'content-type': 'application/json' }, credentials: 'same-origin', body: JSON.stringify({ key }) })
  const data = await res.json().catch(() => ({}))
  $('#login-key').value = ''
  if (!res.ok) { $('#login-error').textContent = data.detail ?? `login failed (HTTP ${res.status})`; return }
  await start()
})

$('#logout').addEventListener('click', async () => {
  await api('POST', '/ops/api/logout').catch(() => {})
  session = undefined
  showLogin('Logged out.')
})

// ---- tabs ----
for (const b of $$('.tabs button')) b.addEventListener('click', () => show(b.dataset.tab))
function show (name) {
  tab = name
  for (const b of $$('.tabs button')) b.setAttribute('aria-selected', String(b.dataset.tab === name))
  for (const p of $$('[data-panel]')) p.hidden = p.dataset.panel !== name
  void refresh()
}
const loaders = { jobs: loadJobs, queues: loadQueues, dead: loadDead, agents: loadAgents, pools: loadPools, consoles: loadSessions, audit: loadAudit }
async function refresh () {
  try { await loaders[tab]() } catch (err) { if (err.message !== 'logged out') flash(err.message, true) }
}

// ---- jobs ----
function jobFilters () {
  const f = { q: $('#job-q').value.trim(), state: $('#job-state').value, kind: $('#job-kind').value, agent: $('#job-agent').value, tenantId: $('#job-tenant').value, serverId: $('#job-server').value }
  return Object.fromEntries(Object.entries(f).filter(([, v]) => v !== ''))
}
function matches (j, f) {
  if (f.q !== undefined && j.id !== f.q && j.serverId !== f.q) return false
  for (const k of ['state', 'kind', 'agent', 'tenantId', 'serverId']) if (f[k] !== undefined && j[k] !== f[k]) return false
  return true
}
function jobRow (j) {
  const tr = el('tr', { dataset: { jobId: j.id, state: j.state }, onclick: () => selectJob(j.id) },
    el('td', {}, time(j.createdAt)),
    el('td', { class: 'id', title: j.id, text: short(j.id) }),
    el('td', { text: `${j.kind}${j.action ? ' ' + j.action : ''}${j.protocol ? ' ' + j.protocol : ''}` }),
    el('td', {}, stateBadge(j.state)),
    el('td', { title: j.serverId, text: j.serverName ?? short(j.serverId) }),
    el('td', { text: j.agent ?? '' }),
    el('td', { title: j.tenantId, text: tenantName(j.tenantId) }),
    el('td', { class: 'err', title: j.error?.message ?? '', text: j.error ? `${j.error.code}: ${j.error.message}` : '' }))
  if (j.id === selectedJob) tr.classList.add('selected')
  return tr
}
async function loadJobs () {
  const q = new URLSearchParams({ ...jobFilters(), limit: '200' })
  const jobs = await api('GET', `/ops/api/jobs?${q}`)
  fill($('#jobs-table tbody'), jobs.map(jobRow), $('#jobs-empty'))
  if (selectedJob !== undefined) await selectJob(selectedJob, false)
}
$('#job-filters').addEventListener('submit', (ev) => { ev.preventDefault(); void refresh() })
for (const id of ['#job-state', '#job-kind', '#job-agent', '#job-tenant', '#job-server']) $(id).addEventListener('change', () => void refresh())

async function selectJob (id, scroll = true) {
  selectedJob = id
  for (const tr of $$('#jobs-table tbody tr')) tr.classList.toggle('selected', tr.dataset.jobId === id)
  let j
  try { j = await api('GET', `/ops/api/jobs/${id}`) } catch (err) { flash(err.message, true); return }
  const d = $('#job-detail')
  const retry = el('button', { 'data-action': 'retry', onclick: () => act('retry', j.id) }, 'Retry')
  const cancel = el('button', { class: 'danger', 'data-action': 'cancel', onclick: () => act('cancel', j.id) }, 'Cancel')
  retry.disabled = !(['failed', 'timed_out'].includes(j.state) && j.kind !== 'console')
  cancel.disabled = j.state !== 'queued'
  d.replaceChildren(
    el('h2', { text: `${j.kind}${j.action ? ' ' + j.action : ''} · ` }, stateBadge(j.state)),
    el('dl', {},
      el('dt', { text: 'job' }), el('dd', { class: 'mono', text: j.id }),
      el('dt', { text: 'server' }), el('dd', {}, `${j.serverName ?? ''} `, el('span', { class: 'mono muted', text: j.serverId })),
      el('dt', { text: 'agent' }), el('dd', { text: j.agent ?? '' }),
      el('dt', { text: 'tenant' }), el('dd', { text: tenantName(j.tenantId) }),
      el('dt', { text: 'asked by' }), el('dd', { class: 'mono', text: j.requestedBy }),
      el('dt', { text: 'deadline' }), el('dd', {}, time(j.deadline)),
      ...(j.retryOf ? [el('dt', { text: 'retry of' }), el('dd', {}, el('a', { class: 'mono', 'data-retry-of': j.retryOf, onclick: () => selectJob(j.retryOf), text: j.retryOf }))] : [])),
    el('strong', { text: 'History' }),
    el('ol', { class: 'history' }, ...j.history.map(h => el('li', {}, stateBadge(h.state), ' ', el('time', { datetime: h.at, title: h.at, text: new Date(h.at).toLocaleTimeString() })))),
    ...(j.error ? [el('strong', { text: 'Error' }), el('pre', { class: 'job-error', text: `${j.error.code}${j.error.retryable ? ' (retryable)' : ''}: ${j.error.message}` })] : []),
    ...(j.result ? [el('strong', { text: 'Result' }), el('pre', { text: JSON.stringify(j.result, null, 2) })] : []),
    el('div', { class: 'actions' }, retry, cancel, el('button', { class: 'ghost', onclick: () => { selectedJob = undefined; d.hidden = true; for (const tr of $$('#jobs-table tr.selected')) tr.classList.remove('selected') } }, 'Close')))
  d.hidden = false
  if (scroll) d.scrollIntoView({ block: 'nearest' })
}

async function act (what, id) {
  try {
    const j = await api('POST', `/ops/api/jobs/${id}/${what}`)
    flash(what === 'retry' ? `Retry started: job ${short(j.id)}` : `Job ${short(id)} cancelled`)
    if (what === 'retry') { selectedJob = j.id }
    await loadJobs()
  } catch (err) { if (err.message !== 'logged out') flash(err.message, true) }
}

/** A job event: its row updates in place (or appears on top) when it matches the filters. */
async function onJobEvent (e) {
  if (tab === 'consoles' && e.kind === 'console') scheduleRefresh()
  if (tab === 'queues' || tab === 'agents' || tab === 'pools') scheduleRefresh()
  if (tab !== 'jobs') return
  const f = jobFilters()
  let j
  try { j = await api('GET', `/ops/api/jobs/${e.jobId}`) } catch { return }
  const tbody = $('#jobs-table tbody')
  const old = $(`tr[data-job-id="${CSS.escape(j.id)}"]`, tbody)
  if (!matches(j, f)) { old?.remove(); $('#jobs-empty').hidden = tbody.children.length > 0; return }
  const row = jobRow(j)
  row.classList.add('fresh')
  if (old) old.replaceWith(row)
  else tbody.prepend(row)
  $('#jobs-empty').hidden = true
  if (j.id === selectedJob) await selectJob(j.id, false)
}

let refreshTimer
function scheduleRefresh () { clearTimeout(refreshTimer); refreshTimer = setTimeout(() => void refresh(), 300) }

// ---- queues ----
const rate = (v) => v === undefined ? '–' : v.toFixed(1)
async function loadQueues () {
  const v = await api('GET', '/ops/api/queues')
  $('#queues-summary').textContent = `${v.jobsPerMinute} jobs created in the last minute, ${v.jobsLast15Minutes} in 15 minutes · ${v.source === 'management' ? 'from the RabbitMQ management API' : 'passive declares (set RABBITMQ_MANAGEMENT_URL for rates)'}${v.error ? ' · ' + v.error : ''}`
  fill($('#queues-table tbody'), v.queues.map(q => el('tr', { dataset: { queue: q.queue } },
    el('td', { class: 'mono', text: q.queue }), el('td', { class: 'num', text: q.messages }), el('td', { class: 'num', text: q.unacked ?? '–' }),
    el('td', { class: 'num', text: q.consumers }), el('td', { class: 'num', text: rate(q.publishRate) }), el('td', { class: 'num', text: rate(q.deliverRate) }))))
}

// ---- dead letters ----
async function loadDead () {
  const list = await api('GET', '/ops/api/dead-letters')
  fill($('#dead-table tbody'), list.map(d => el('tr', { dataset: { messageId: d.messageId } },
    el('td', {}, d.deadAt ? time(d.deadAt) : ''), el('td', { text: d.lane }), el('td', { text: d.type }), el('td', { class: 'id', title: d.jobId ?? '', text: short(d.jobId) }),
    el('td', { text: `${d.kind ?? ''}${d.action ? ' ' + d.action : ''}` }), el('td', { title: d.serverId ?? '', text: servers.get(d.serverId)?.name ?? short(d.serverId) }),
    el('td', { text: d.reason ?? '' }), el('td', { class: 'mono', text: d.originalQueue ?? '' }), el('td', {}, d.jobState ? stateBadge(d.jobState) : ''),
    el('td', {}, el('button', { 'data-action': 'replay', onclick: async (ev) => {
      ev.target.disabled = true
      try { await api('POST', '/ops/api/dead-letters/replay', { lane: d.lane, messageId: d.messageId }); flash(`Replayed to ${d.originalQueue}`) } catch (err) { flash(err.message, true) }
      await refresh()
    } }, 'Replay')))), $('#dead-empty'))
}

// ---- agents ----
async function loadAgents () {
  const v = await api('GET', '/ops/api/agents')
  $('#agent-types').replaceChildren(...v.types.map(t => el('div', { dataset: { agentType: t.type } }, el('b', { text: t.type }), `${t.instances} process${t.instances === 1 ? '' : 'es'} · ${t.inFlight} in flight`)))
  fill($('#agents-table tbody'), v.instances.map(i => el('tr', { class: i.alive ? '' : 'dead', dataset: { instance: i.instance } },
    el('td', { class: 'mono', text: i.instance }), el('td', { text: i.types.join(', ') }), el('td', { class: 'num', title: i.inFlight.join('\n'), text: i.inFlight.length }),
    el('td', { class: 'num', text: i.done }), el('td', {}, i.startedAt ? time(i.startedAt) : ''), el('td', {}, time(i.at), i.alive ? '' : ' (gone)'))), $('#agents-empty'))
}

// ---- pools ----
async function loadPools () {
  const pools = await api('GET', '/ops/api/pools')
  fill($('#pools-table tbody'), pools.map(p => el('tr', { class: p.state === 'failing' ? 'dead' : '', dataset: { pool: p.name, state: p.state, ready: p.ready, inUse: p.inUse } },
    el('td', { class: 'mono', text: p.name }), el('td', { class: 'mono', text: p.tenantId }), el('td', { text: p.state }),
    el('td', { class: 'num', text: p.size }), el('td', { class: 'num', text: p.ready }), el('td', { class: 'num', text: p.starting }),
    el('td', { class: 'num', text: p.inUse }), el('td', { class: 'num', text: p.failing }),
    el('td', {}, ...p.clones.map(c => el('div', { class: 'mono', dataset: { clone: c.name, cloneState: c.state }, title: c.name, text: `${c.slot}: ${c.state}` }))),
    el('td', { text: p.lastError ?? '' }))), $('#pools-empty'))
}

// ---- consoles ----
async function loadSessions () {
  const list = await api('GET', '/ops/api/sessions')
  fill($('#sessions-table tbody'), list.filter(s => s.revokedAt === undefined).map(s => el('tr', { dataset: { sessionId: s.id } },
    el('td', { class: 'id', title: s.id, text: short(s.id) }), el('td', { title: s.serverId, text: s.serverName ?? short(s.serverId) }), el('td', { text: tenantName(s.tenantId) }),
    el('td', { text: s.protocol }), el('td', { text: s.connected ? 'connected' : 'none' }), el('td', {}, time(s.createdAt)), el('td', {}, time(s.expiresAt)),
    el('td', {}, el('button', { class: 'danger', 'data-action': 'revoke', onclick: async (ev) => {
      ev.target.disabled = true
      try { await api('DELETE', `/ops/api/sessions/${s.id}`); flash(`Session ${short(s.id)} revoked`) } catch (err) { flash(err.message, true) }
      await refresh()
    } }, 'Revoke')))), $('#sessions-empty'))
}

// ---- audit ----
async function loadAudit () {
  const q = new URLSearchParams({ limit: $('#audit-limit').value })
  if ($('#audit-server').value.trim() !== '') q.set('serverId', $('#audit-server').value.trim())
  if ($('#audit-tenant').value !== '') q.set('tenantId', $('#audit-tenant').value)
  const list = await api('GET', `/ops/api/audit?${q}`)
  fill($('#audit-table tbody'), list.map(a => el('tr', {},
    el('td', {}, time(a.at)), el('td', { text: `${a.actor} (${a.role})` }), el('td', { text: a.action }), el('td', { text: a.result }),
    el('td', { title: a.serverId ?? '', text: servers.get(a.serverId)?.name ?? short(a.serverId) }), el('td', { class: 'id', title: a.jobId ?? '', text: short(a.jobId) }),
    el('td', { text: a.tenantId ? tenantName(a.tenantId) : '' }), el('td', { class: 'mono', text: a.ip ?? '' }))), $('#audit-empty'))
}
$('#audit-filters').addEventListener('submit', (ev) => { ev.preventDefault(); void refresh() })
$('#audit-tenant').addEventListener('change', () => void refresh())

// ---- start ----
let stopLive
async function loadLookups () {
  const [ts, ss] = await Promise.all([api('GET', '/ops/api/tenants'), api('GET', '/ops/api/servers')])
  tenants.clear(); for (const t of ts) tenants.set(t.id, t)
  servers.clear(); for (const s of ss) servers.set(s.id, s)
  for (const sel of ['#job-tenant', '#audit-tenant']) {
    const keep = $(sel).value
    $(sel).replaceChildren(el('option', { value: '', text: 'any tenant' }), ...ts.map(t => el('option', { value: t.id, text: t.name })))
    $(sel).value = keep
  }
  const keep = $('#job-server').value
  $('#job-server').replaceChildren(el('option', { value: '', text: 'any server' }), ...ss.map(s => el('option', { value: s.id, text: `${s.name} (${s.agent})` })))
  $('#job-server').value = keep
}

async function start () {
  const res = await fetch('/ops/api/session', { credentials: 'same-origin' })
  if (!res.ok) { showLogin(); return }
  session = await res.json()
  $('#login').hidden = true
  $('#app').hidden = false
  $('#ns').textContent = session.namespace
  $('#whoami').textContent = `${session.role} · key ${session.keyId}`
  await loadLookups().catch(() => {})
  stopLive = subscribe((e) => { void onJobEvent(e) }, (up, why) => {
    $('#live').classList.toggle('off', !up)
    document.body.dataset.live = up ? 'on' : 'off'
    if (why === 'ended') showLogin('Your session ended: log in again.')
    // After a reconnect, read again what may have changed meanwhile.
    else if (up) { void loadLookups().catch(() => {}); void refresh() }
  })
  show(tab)
}

// Relative times ("12 s ago") stay true while the page is open.
setInterval(() => { for (const t of $$('time[datetime]')) if (!t.closest('.history')) t.textContent = ago(t.getAttribute('datetime')) }, 10_000)

// Lists that change without a job event (viewers connecting, heartbeats) are re-read while shown.
setInterval(() => { if (session !== undefined && ['queues', 'agents', 'pools', 'consoles'].includes(tab) && !document.hidden) void refresh() }, 5000)
void start()
