#!/usr/bin/env node
// `npm run demo`: a VM to try Porthole on, against the stack `npm start` runs.
//   1. defines (and starts) a small diskless VM `porthole-demo` with a VNC display on the local libvirt;
//   2. through the running API, with the admin token (PORTHOLE_ADMIN_TOKEN, else .porthole/local.env):
//      creates the tenant "Porthole demo", a customer API key for it, and registers the VM as a kvm server;
//   3. asks for the VM's status with the customer key, and prints curl lines that work as printed.
// Running it again reuses what exists (the customer key is kept in .porthole/demo.json, mode 0600, because
// the API shows a key only once). `npm run demo -- --clean` removes the key, the server and the VM (the
// API has no tenant deletion; the tenant stays and is reused next time).
// Settings: PORTHOLE_API_URL (default http://127.0.0.1:$API_PORT, API_PORT 8080), DEMO_LIBVIRT_URI
// (default qemu:///system; the agents must reach the same URI).
import { execFile } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { adminToken, LOCAL_ENV, rel, STATE_DIR, writePrivate } from './lib/local-env.mjs'

const run = promisify(execFile)
const NAME = 'porthole-demo'
const TENANT = 'Porthole demo'
const STATE = join(STATE_DIR, 'demo.json')
const URI = process.env.DEMO_LIBVIRT_URI || 'qemu:///system'
const API = (process.env.PORTHOLE_API_URL || `http://127.0.0.1:${process.env.API_PORT || '8080'}`).replace(/\/$/, '')
const clean = process.argv.includes('--clean')

const say = (m) => console.log(m)
function fail (m) { console.error(`demo: ${m}`); process.exit(1) }

async function virsh (...args) {
  try {
    const { stdout } = await run('virsh', ['-c', URI, ...args], { timeout: 30_000 })
    return stdout.trim()
  } catch (err) {
    if (err.code === 'ENOENT') fail('virsh not found: install libvirt-clients (and libvirt-daemon-system, qemu-system-x86)')
    throw Object.assign(new Error((err.stderr || err.message).trim()), { stderr: err.stderr })
  }
}

async function domainState () {
  try { return await virsh('domstate', NAME) } catch { return undefined }
}

function domainXml () {
  let type = 'qemu'
  try { accessSync('/dev/kvm', constants.R_OK | constants.W_OK); type = 'kvm' } catch { /* software emulation */ }
  // Diskless on purpose: nothing to download; the VNC display shows the BIOS looking for a boot device.
  return `<domain type='${type}'>
  <name>${NAME}</name>
  <description>Porthole demo VM (npm run demo); remove with npm run demo -- --clean</description>
  <memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
  </devices>
</domain>
`
}

async function ensureDomain () {
  let state = await domainState()
  if (state === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'porthole-demo-'))
    try {
      writeFileSync(join(dir, 'demo.xml'), domainXml())
      await virsh('define', join(dir, 'demo.xml'))
    } catch (err) {
      fail(`could not define the VM on ${URI}: ${err.message}`)
    } finally { rmSync(dir, { recursive: true, force: true }) }
    say(`VM ${NAME}: defined on ${URI}`)
    state = 'shut off'
  }
  if (state !== 'running') {
    try { await virsh('start', NAME) } catch (err) { fail(`could not start ${NAME}: ${err.message}`) }
    say(`VM ${NAME}: started`)
  } else say(`VM ${NAME}: already running on ${URI}`)
}

async function api (method, path, body, key) {
  let res
  try {
    res = await fetch(API + path, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
  } catch (err) {
    fail(`the API does not answer at ${API} (${err.cause?.code ?? err.message}): start it with \`npm start\` in another terminal, or set PORTHOLE_API_URL`)
  }
  const text = await res.text()
  let parsed
  try { parsed = text === '' ? undefined : JSON.parse(text) } catch { parsed = text }
  return { status: res.status, body: parsed }
}

function items (body) {
  if (Array.isArray(body)) return body
  for (const k of ['items', 'data', 'tenants', 'servers']) if (Array.isArray(body?.[k])) return body[k]
  return []
}

function problem (r) {
  const b = r.body
  return typeof b === 'object' && b !== null ? `${r.status} ${b.title ?? ''}${b.detail ? `: ${b.detail}` : ''}` : `${r.status} ${String(b ?? '')}`
}

function loadState () {
  try { return JSON.parse(readFileSync(STATE, 'utf8')) } catch { return {} }
}

const admin = adminToken()

if (clean) {
  const st = loadState()
  if (admin === undefined) say(`no admin token (PORTHOLE_ADMIN_TOKEN or ${rel(LOCAL_ENV)}): skipping the API side`)
  else {
    const health = await fetch(`${API}/healthz`).then(() => true, () => false)
    if (!health) say(`the API does not answer at ${API}: leaving the server record and key in Redis`)
    else {
      if (st.keyId !== undefined) {
        const r = await api('DELETE', `/v1/api-keys/${st.keyId}`, undefined, admin)
        say(r.status < 300 || r.status === 404 ? 'customer key: deleted' : `customer key: ${problem(r)}`)
      }
      const serverId = st.serverId ?? items((await api('GET', `/v1/servers${st.tenantId ? `?tenantId=${st.tenantId}` : ''}`, undefined, admin)).body).find(s => s.name === NAME)?.id
      if (serverId !== undefined) {
        const r = await api('DELETE', `/v1/servers/${serverId}`, undefined, admin)
        say(r.status < 300 || r.status === 404 ? `server ${serverId}: deleted` : `server ${serverId}: ${problem(r)}`)
      }
    }
  }
  const state = await domainState()
  if (state !== undefined) {
    if (state !== 'shut off') await virsh('destroy', NAME).catch(() => {})
    await virsh('undefine', NAME)
    say(`VM ${NAME}: removed from ${URI}`)
  } else say(`VM ${NAME}: not defined on ${URI}`)
  rmSync(STATE, { force: true })
  say(`the tenant "${TENANT}" stays (the API has no tenant deletion) and is reused by the next \`npm run demo\``)
  process.exit(0)
}

if (admin === undefined) fail(`no admin token: set PORTHOLE_ADMIN_TOKEN, or run \`npm start\` once (it writes ${rel(LOCAL_ENV)})`)
const health = await fetch(`${API}/healthz`).then(r => r.status, err => fail(`the API does not answer at ${API} (${err.cause?.code ?? err.message}): start it with \`npm start\` in another terminal, or set PORTHOLE_API_URL`))
if (health !== 200) fail(`${API}/healthz answered ${health}`)

await ensureDomain()

const st = loadState()
// Tenant
const tenants = await api('GET', '/v1/tenants', undefined, admin)
if (tenants.status !== 200) fail(`GET /v1/tenants: ${problem(tenants)}${tenants.status === 401 ? ' (is the admin token the one the API runs with?)' : ''}`)
let tenant = items(tenants.body).find(t => t.name === TENANT)
if (tenant === undefined) {
  const r = await api('POST', '/v1/tenants', { name: TENANT }, admin)
  if (r.status !== 201 && r.status !== 200) fail(`POST /v1/tenants: ${problem(r)}`)
  tenant = r.body
  say(`tenant "${TENANT}": created (${tenant.id})`)
} else say(`tenant "${TENANT}": exists (${tenant.id})`)

// Server
const servers = await api('GET', `/v1/servers?tenantId=${tenant.id}`, undefined, admin)
if (servers.status !== 200) fail(`GET /v1/servers: ${problem(servers)}`)
let server = items(servers.body).find(s => s.name === NAME)
if (server === undefined) {
  const r = await api('POST', '/v1/servers', { name: NAME, tenantId: tenant.id, agent: 'kvm', connection: { uri: URI, domain: NAME } }, admin)
  if (r.status !== 201 && r.status !== 200) fail(`POST /v1/servers: ${problem(r)}`)
  server = r.body
  say(`server ${NAME}: registered (${server.id}, agent kvm, ${URI})`)
} else say(`server ${NAME}: registered already (${server.id})`)

// Customer key: reuse the saved one while it still works for this server.
let key = st.key
let keyId = st.keyId
if (key !== undefined && (st.serverId !== server.id || (await api('GET', `/v1/servers/${server.id}`, undefined, key)).status !== 200)) key = undefined
if (key === undefined) {
  const r = await api('POST', '/v1/api-keys', { tenantId: tenant.id, role: 'customer', name: 'porthole-demo customer' }, admin)
  if (r.status !== 201 && r.status !== 200) fail(`POST /v1/api-keys: ${problem(r)}`)
  key = r.body.key
  keyId = r.body.id
  say(`customer key: created (${keyId}), saved in ${rel(STATE)}`)
} else say(`customer key: reusing ${keyId} from ${rel(STATE)}`)
writePrivate(STATE, JSON.stringify({ tenantId: tenant.id, serverId: server.id, keyId, key, uri: URI }, null, 2) + '\n')

// One real round trip with the customer key: API → receiver → kvm agent → libvirt and back.
const status = await api('GET', `/v1/servers/${server.id}/status?wait=10`, undefined, key)
if (status.status === 200) say(`status (asked of libvirt through Porthole, as the customer): power ${status.body.power}`)
else if (status.status === 202) say(`status: the job ${status.body?.id ?? ''} had not finished after 10 s (are the receiver and agents running? see the npm start output)`)
else say(`status check: ${problem(status)}`)

const id = server.id
const auth = `-H 'Authorization: Bearer ${key}'`
const json = "-H 'Content-Type: application/json'"
say(`
Try it as the customer (the key is shown here for this local demo; it is also in ${rel(STATE)}):

  # power state, asked of libvirt
  curl -sS ${auth} '${API}/v1/servers/${id}/status'
  # power off, then on (?wait=10 waits for the job to finish; without it you get 202 and a job to poll)
  curl -sS ${auth} ${json} -X POST '${API}/v1/servers/${id}/power?wait=10' -d '{"action":"off"}'
  curl -sS ${auth} ${json} -X POST '${API}/v1/servers/${id}/power?wait=10' -d '{"action":"on"}'
  # a browser console URL (open the "url" it returns)
  curl -sS ${auth} ${json} -X POST '${API}/v1/servers/${id}/console' -d '{"protocol":"vnc"}'
  # jobs and live console sessions of this server
  curl -sS ${auth} '${API}/v1/jobs?serverId=${id}'
  curl -sS ${auth} '${API}/v1/console-sessions?serverId=${id}'
  # revoke a console session (closes its WebSocket within a second)
  curl -sS ${auth} -X DELETE '${API}/v1/console-sessions/SESSION_ID'

API docs: ${API}/docs    remove the demo: npm run demo -- --clean`)
