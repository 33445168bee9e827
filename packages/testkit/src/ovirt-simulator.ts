/**
 * SIMULATOR of the oVirt Engine REST API v4 (JSON), for tests only: no oVirt engine is available to test
 * against. It is not oVirt; it imitates the documented behaviour the `ovirt` agent relies on:
 *
 * - HTTPS on 127.0.0.1 with a server certificate signed by a CA made at test time with the `openssl` CLI.
 * - SSO: `POST /ovirt-engine/sso/oauth/token` (form: grant_type=password, scope=ovirt-app-api, username,
 *   password) → `{access_token, scope, exp, token_type}` with `exp` as a string of epoch milliseconds; bad
 *   credentials → 400 `{error_code: 'access_denied', error}`. Tokens live `tokenLifetimeMs`; an expired or
 *   unknown token gets 401 on every API call. Any other path (e.g. `/ovirt-engine/api/api/vms/…` or a token
 *   request under `/ovirt-engine/api/`) is 404, before authentication.
 * - `GET /ovirt-engine/api/vms/{id}` with the engine's JSON quirks: numbers and booleans as strings, an empty
 *   list as `{}`; unknown VM → 404 fault `{reason, detail}`.
 * - Actions `POST .../vms/{id}/start|stop|shutdown|reboot|suspend` → `{"status": "complete"}`, with state
 *   transitions that take `transitionMs` (start: down → wait_for_launch → powering_up → up; shutdown: up →
 *   powering_down → down; reboot: up → reboot_in_progress → up; suspend: up → saving_state → suspended;
 *   start of a suspended VM: suspended → restoring_state → up; stop: at once → down). A locked VM
 *   (status image_locked) → 409 fault "VM is locked"; an action the state does not allow → 409 fault.
 * - `GET .../vms/{id}/graphicsconsoles[?current=true]`: address and port only with current=true (as the engine
 *   does); `POST .../graphicsconsoles/{cid}/ticket` `{ticket: {expiry}}` → `{status, ticket: {value, expiry}}`.
 */
import { execFile } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Scope } from './index.js'

const run = promisify(execFile)

export interface SimVm {
  id: string
  name: string
  status: string
  consoles: Array<{ id: string, protocol: 'vnc' | 'spice', address: string, port: number, tlsPort?: number }>
  /** Status history with times, oldest first. */
  history: Array<{ at: number, status: string }>
}

export interface OvirtSimulator {
  /** Base URL as a server record holds it: `https://127.0.0.1:PORT/ovirt-engine`. */
  url: string
  /** PEM of the CA that signed the server's certificate. */
  caCert: string
  username: string
  password: string
  addVm: (o?: { status?: string, consoles?: SimVm['consoles'] }) => SimVm
  vm: (id: string) => SimVm | undefined
  /** How many tokens SSO issued, and every API request seen (method and path), for assertions. */
  tokensIssued: () => number
  requests: Array<{ method: string, path: string, status: number }>
  /** How many issued tokens have not expired yet. */
  liveTokens: () => number
  /** Forgets every token it issued (as an engine restart does): the next API call with one gets 401. */
  revokeTokens: () => void
  /** The tickets issued, newest last. */
  tickets: Array<{ vmId: string, consoleId: string, value: string, expiry: number }>
}

export interface Pki { dir: string, caCert: string, caKey: string, cert: string, key: string }

/** A CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI in a temporary folder. */
export async function makePki (t: Scope): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-pki-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const p = (f: string): string => join(dir, f)
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'),
    '-days', '2', '-subj', '/CN=Porthole test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=127.0.0.1'])
  await writeFile(p('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  await run('openssl', ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.pem'), '-days', '2', '-extfile', p('ext.cnf')])
  return {
    dir,
    caCert: await readFile(p('ca.pem'), 'utf8'),
    caKey: await readFile(p('ca.key'), 'utf8'),
    cert: await readFile(p('server.pem'), 'utf8'),
    key: await readFile(p('server.key'), 'utf8')
  }
}

export async function startOvirtSimulator (t: Scope, o: { pki?: Pki, tokenLifetimeMs?: number, transitionMs?: number } = {}): Promise<OvirtSimulator> {
  const pki = o.pki ?? await makePki(t)
  const tokenLifetimeMs = o.tokenLifetimeMs ?? 60_000
  const transitionMs = o.transitionMs ?? 300
  const username = 'admin@internal'
  const password = `pw-${randomBytes(6).toString('hex')}`
  const tokens = new Map<string, number>()
  const vms = new Map<string, SimVm>()
  const timers = new Set<NodeJS.Timeout>()
  let issued = 0
  const requests: OvirtSimulator['requests'] = []
  const tickets: OvirtSimulator['tickets'] = []

  const setStatus = (vm: SimVm, status: string): void => { vm.status = status; vm.history.push({ at: Date.now(), status }) }
  /** Moves the VM through `steps`, one every transitionMs (only if nothing else changed it meanwhile). */
  const transition = (vm: SimVm, steps: string[]): void => {
    const [first, ...rest] = steps
    if (first === undefined) return
    setStatus(vm, first)
    if (rest.length === 0) return
    const expect = vm.history.length
    const tm = setTimeout(() => { timers.delete(tm); if (vm.history.length === expect) transition(vm, rest) }, transitionMs)
    timers.add(tm)
  }

  const send = (res: ServerResponse, status: number, body?: unknown): void => {
    const text = body === undefined ? '' : JSON.stringify(body)
    res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    res.end(text)
  }
  const fault = (res: ServerResponse, status: number, detail: string): void => send(res, status, { reason: 'Operation Failed', detail: `[${detail}]` })

  const vmJson = (vm: SimVm): Record<string, unknown> => ({
    id: vm.id,
    href: `/ovirt-engine/api/vms/${vm.id}`,
    name: vm.name,
    status: vm.status,
    // The engine's JSON quirks: numbers and booleans as strings, an empty list as {}.
    memory: '1073741824',
    stateless: 'false',
    delete_protected: 'false',
    cpu: { architecture: 'x86_64', topology: { cores: '1', sockets: '1', threads: '1' } },
    tags: {},
    link: [{ href: `/ovirt-engine/api/vms/${vm.id}/graphicsconsoles`, rel: 'graphicsconsoles' }]
  })

  async function body (req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    return Buffer.concat(chunks).toString('utf8')
  }

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'https://sim')
    const path = u.pathname
    const text = await body(req)
    if (req.method === 'POST' && path === '/ovirt-engine/sso/oauth/token') {
      const f = new URLSearchParams(text)
      if (!(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded') || f.get('grant_type') !== 'password' || f.get('scope') !== 'ovirt-app-api') {
        send(res, 400, { error_code: 'invalid_request', error: 'bad request' }); return
      }
      if (f.get('username') !== username || f.get('password') !== password) {
        send(res, 400, { error_code: 'access_denied', error: `Cannot authenticate user '${f.get('username') ?? ''}': The username or password is incorrect..` }); return
      }
      const token = randomBytes(24).toString('base64url')
      const exp = Date.now() + tokenLifetimeMs
      tokens.set(token, exp)
      issued++
      send(res, 200, { access_token: token, scope: 'ovirt-app-api', exp: String(exp), token_type: 'bearer' })
      return
    }
    // Anything but SSO and the API's own resources is not found, as on the engine: a client that built its URLs
    // from a base with /api twice, or posted for a token under /api, learns it here, not as a refused login.
    const m = /^\/ovirt-engine\/api\/vms\/([^/]+)(?:\/(.+))?$/.exec(path)
    if (m === null) { send(res, 404); return }
    const auth = req.headers.authorization ?? ''
    const exp = auth.startsWith('Bearer ') ? tokens.get(auth.slice(7)) : undefined
    if (exp === undefined || exp <= Date.now()) {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="RESTAPI"' }); res.end(); return
    }
    if (req.headers.accept !== 'application/json') { send(res, 406); return }
    const vm = vms.get(decodeURIComponent(m[1]!))
    if (vm === undefined) { fault(res, 404, `Entity not found: id=${m[1]!}`); return }
    const rest = m[2]
    if (req.method === 'GET' && rest === undefined) { send(res, 200, vmJson(vm)); return }
    if (req.method === 'GET' && rest === 'graphicsconsoles') {
      const current = u.searchParams.get('current') === 'true'
      if (vm.consoles.length === 0) { send(res, 200, {}); return }
      send(res, 200, {
        graphics_console: vm.consoles.map(c => ({
          id: c.id,
          href: `/ovirt-engine/api/vms/${vm.id}/graphicsconsoles/${c.id}`,
          protocol: c.protocol,
          ...(current && vm.status === 'up' ? { address: c.address, port: String(c.port), ...(c.tlsPort === undefined ? {} : { tls_port: String(c.tlsPort) }) } : {}),
          vm: { id: vm.id, href: `/ovirt-engine/api/vms/${vm.id}` }
        }))
      })
      return
    }
    if (req.method !== 'POST' || rest === undefined) { send(res, 405); return }
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) { send(res, 415); return }
    let action: Record<string, unknown>
    try { action = JSON.parse(text) as Record<string, unknown> } catch { fault(res, 400, 'Malformed request body'); return }
    const tm = /^graphicsconsoles\/([^/]+)\/ticket$/.exec(rest)
    if (tm !== null) {
      const c = vm.consoles.find(x => x.id === decodeURIComponent(tm[1]!))
      if (c === undefined) { fault(res, 404, 'Entity not found: graphics console'); return }
      if (vm.status !== 'up') { fault(res, 409, 'Cannot set VM ticket. VM is not running.'); return }
      const expiry = Number((action.ticket as { expiry?: unknown } | undefined)?.expiry ?? 7200)
      const value = randomBytes(9).toString('base64').slice(0, 12)
      tickets.push({ vmId: vm.id, consoleId: c.id, value, expiry })
      send(res, 200, { status: 'complete', ticket: { value, expiry: String(expiry) } })
      return
    }
    const name = rest
    if (vm.status === 'image_locked') { fault(res, 409, `Cannot ${name} VM. VM is locked. Please try again in a few minutes.`); return }
    const s = vm.status
    const running = ['up', 'powering_up', 'reboot_in_progress'].includes(s)
    switch (name) {
      case 'start':
        if (s === 'down') transition(vm, ['wait_for_launch', 'powering_up', 'up'])
        else if (s === 'suspended') transition(vm, ['restoring_state', 'up'])
        else if (s === 'paused') transition(vm, ['up'])
        else { fault(res, 409, 'Cannot run VM. VM is running.'); return }
        break
      case 'stop':
        if (s === 'down') { fault(res, 409, 'Cannot stop VM. VM is not running.'); return }
        transition(vm, ['down'])
        break
      case 'shutdown':
        if (!running) { fault(res, 409, 'Cannot shutdown VM. VM is not running.'); return }
        transition(vm, ['powering_down', 'down'])
        break
      case 'reboot':
        if (s !== 'up') { fault(res, 409, 'Cannot reboot VM. VM is not up.'); return }
        transition(vm, ['reboot_in_progress', 'up'])
        break
      case 'suspend':
        if (s !== 'up') { fault(res, 409, 'Cannot hibernate VM. VM is not up.'); return }
        transition(vm, ['saving_state', 'suspended'])
        break
      default:
        fault(res, 404, `No action ${name}`); return
    }
    send(res, 200, { status: 'complete', async: 'false' })
  }

  const server = https.createServer({ key: pki.key, cert: pki.cert }, (req, res) => {
    res.on('finish', () => requests.push({ method: req.method ?? '', path: (req.url ?? '').replace(/\?.*$/, ''), status: res.statusCode }))
    handle(req, res).catch(() => { if (!res.headersSent) send(res, 500); else res.destroy() })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', () => resolve()))
  t.after(async () => {
    for (const tm of timers) clearTimeout(tm)
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  const port = (server.address() as AddressInfo).port

  return {
    url: `https://127.0.0.1:${port}/ovirt-engine`,
    caCert: pki.caCert,
    username,
    password,
    addVm (v = {}) {
      const id = randomUUID()
      const vm: SimVm = {
        id,
        name: `vm-${id.slice(0, 8)}`,
        status: v.status ?? 'down',
        consoles: v.consoles ?? [{ id: randomUUID(), protocol: 'vnc', address: '192.0.2.10', port: 5900 + Math.floor(Math.random() * 100) }],
        history: []
      }
      vm.history.push({ at: Date.now(), status: vm.status })
      vms.set(id, vm)
      return vm
    },
    vm: id => vms.get(id),
    tokensIssued: () => issued,
    liveTokens: () => [...tokens.values()].filter(exp => exp > Date.now()).length,
    revokeTokens: () => tokens.clear(),
    requests,
    tickets
  }
}
