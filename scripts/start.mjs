#!/usr/bin/env node
// `npm start`: runs the four services on this machine, one process each (or N: --replicas), and keeps them running.
//   node scripts/start.mjs [api receiver agents console-gateway] [--replicas N] [--raw] [--help]
// - `--replicas N` (or PORTHOLE_REPLICAS=N) runs N of each service side by side, replica i on every port of
//   the first plus 100×(i−1) (API 8080, 8180, …; gateway 8081, 8181, …; metrics and serial bridge alike).
//   They share the work through RabbitMQ and Redis: any API replica takes any request, any gateway serves any
//   console URL (PUBLIC_GATEWAY_URL stays the first's; in production a load balancer sits in front).
// - Settings come from the environment (see the README's table); unset ones default to this machine:
//   RabbitMQ and Redis on 127.0.0.1, libvirt at qemu:///system, the API on 127.0.0.1:8080 and the console
//   gateway on 127.0.0.1:8081.
// - PORTHOLE_SECRET_KEY, CONSOLE_TRANSIT_KEY, CONSOLE_KEY, SOL_BRIDGE_SECRET and PORTHOLE_ADMIN_TOKEN, when not set, are generated once and kept in
//   .porthole/local.env (mode 0600), so a restart opens what the last run sealed. The admin token is shown
//   once, on the terminal, when it is created: fine for a local quick start, not for a shared machine (set
//   the four variables yourself there).
// - A service that exits is started again after a back-off (0.5 s doubling to 30 s; reset once it has run
//   for a minute) — except one that exits on a bad setting (exit code 2): the same environment would fail the
//   same way, so the others are stopped and the last line names the service and the setting, with exit code 2.
//   SIGINT or SIGTERM stops them all (SIGTERM, then SIGKILL after 10 s, 100 s for the agents, whose running actions finish first); a second Ctrl-C kills.
// - Each log line is passed through with the service's name in front; `--raw` passes the JSON lines
//   untouched (each names its service) and writes the supervisor's own lines as JSON too, for pino-pretty or
//   a log shipper.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { connect as netConnect, createServer } from 'node:net'
import { ensureSecrets, keepPrivate, LOCAL_ENV, rel, ROOT } from './lib/local-env.mjs'
import { ALL_SECRET_VARS, mainOf, service, SERVICE_NAMES, SERVICES } from './lib/services.mjs'

const ALL = SERVICE_NAMES
const args = process.argv.slice(2)
if (args.includes('--help') || args.includes('-h')) {
  console.log('usage: node scripts/start.mjs [' + ALL.join(' ') + '] [--replicas N] [--raw]\n' +
    'Runs the named services (all by default; N replicas of each, or PORTHOLE_REPLICAS), restarts any that exits, stops them all on Ctrl-C.')
  process.exit(0)
}
const raw = args.includes('--raw')
const replicasAt = args.indexOf('--replicas')
const replicasArg = replicasAt === -1 ? (args.find(a => a.startsWith('--replicas='))?.slice('--replicas='.length) ?? process.env.PORTHOLE_REPLICAS ?? '1') : args[replicasAt + 1]
if (!/^[1-9]$/.test(replicasArg ?? '')) { console.error(`--replicas (PORTHOLE_REPLICAS): expected a number from 1 to 9, got ${JSON.stringify(replicasArg ?? '')}`); process.exit(2) }
const REPLICAS = Number(replicasArg)
const names = args.filter((a, i) => !a.startsWith('-') && !(replicasAt !== -1 && i === replicasAt + 1))
for (const n of names) {
  if (!ALL.includes(n)) { console.error(`unknown service ${JSON.stringify(n)}: choose from ${ALL.join(', ')}`); process.exit(2) }
}
const selected = names.length > 0 ? ALL.filter(n => names.includes(n)) : ALL

const tty = process.stdout.isTTY === true && process.env.NO_COLOR === undefined
const COLORS = { api: 36, receiver: 35, agents: 33, 'console-gateway': 32, start: 1 }
const width = Math.max(...selected.map(n => n.length + (REPLICAS > 1 ? 2 : 0)), 'start'.length)
const tag = (name) => {
  const t = name.padEnd(width)
  return tty ? `\x1b[${COLORS[name.split('#')[0]] ?? 0}m${t}\x1b[0m |` : `${t} |`
}

/** The supervisor's own messages. */
function say (msg, level = 'info') {
  if (raw) {
    const lv = { info: 30, warn: 40, error: 50 }[level]
    process.stdout.write(JSON.stringify({ level: lv, time: Date.now(), service: 'start', msg }) + '\n')
  } else {
    (level === 'info' ? process.stdout : process.stderr).write(`${tag('start')} ${msg}\n`)
  }
}

// --- settings ---------------------------------------------------------------------------------------------
const { values: secrets, created } = ensureSecrets()
if (keepPrivate(LOCAL_ENV)) say(`${rel(LOCAL_ENV)} was readable by others; it is 0600 now`, 'warn')

const env = { ...process.env, ...secrets }
env.RABBITMQ_URL ||= 'amqp://guest:guest@127.0.0.1:5672'
env.REDIS_URL ||= 'redis://127.0.0.1:6379'
env.API_HOST ||= '127.0.0.1'
env.API_PORT ||= '8080'
env.GATEWAY_HOST ||= '127.0.0.1'
env.GATEWAY_PORT ||= '8081'
// On one machine the metrics listeners are local too (the services' own default, 0.0.0.0, is for containers).
env.METRICS_HOST ||= '127.0.0.1'
// The agents' serial-over-LAN bridge default (their config.ts), made explicit so that replicas can offset it.
if (REPLICAS > 1) env.SOL_BRIDGE_PORT ||= '8082'
env.PUBLIC_GATEWAY_URL ||= `http://${hostForUrl(env.GATEWAY_HOST === '0.0.0.0' || env.GATEWAY_HOST === '::' ? '127.0.0.1' : env.GATEWAY_HOST)}:${env.GATEWAY_PORT}`
const apiUrl = `http://${hostForUrl(env.API_HOST === '0.0.0.0' || env.API_HOST === '::' ? '127.0.0.1' : env.API_HOST)}:${env.API_PORT}`

// Each service gets only its own secrets (services/services.json): a receiver that leaks its environment
// leaks nothing, only the gateway can open what CONSOLE_KEY sealed, and the gateway cannot open server
// credentials (no PORTHOLE_SECRET_KEY: console targets reach it under CONSOLE_TRANSIT_KEY).
/** The environment of one service's replica: the shared settings, its own secrets only, its start-up defaults, its ports. */
function envFor (name, replica = 1) {
  const s = service(name)
  const e = { ...env }
  // Replica i listens on every port of the first + 100×(i−1); port 0 (any free port) stays 0.
  for (const v of [...REPLICA_PORTS, ...[s.listen, s.metrics].filter(l => l !== undefined).map(l => l.port)]) {
    if (e[v] !== undefined && e[v] !== '' && e[v] !== '0') e[v] = String(Number(e[v]) + 100 * (replica - 1))
  }
  for (const v of ALL_SECRET_VARS) if (!s.secrets.includes(v)) delete e[v]
  // E.g. the agents' UV_THREADPOOL_SIZE: libvirt calls run on libuv's thread pool, sized from the
  // environment at process start only (setting it from inside Node 20 is too late).
  for (const [k, v] of Object.entries(s.env)) e[k] ||= v
  return e
}

/** Ports beyond services.json's listeners that a replica must not share: the agents' serial-over-LAN bridge. */
const REPLICA_PORTS = ['SOL_BRIDGE_PORT']

function hostForUrl (h) { return h.includes(':') ? `[${h}]` : h }
function redact (u) { return u.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@') }

// --- pre-flight -----------------------------------------------------------------------------------------
const missing = selected.filter(n => !existsSync(mainOf(n)))
if (missing.length > 0) {
  say(`not built: ${missing.map(n => rel(mainOf(n))).join(', ')}. Run \`npm run build\` (npm start does it first).`, 'error')
  process.exit(1)
}

const problems = []
const rabbit = await probeAny(env.RABBITMQ_URL, 5672, 5671, Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'), b => b[0] === 1 || b.subarray(0, 4).toString('latin1') === 'AMQP')
if (rabbit !== true) problems.push(`RabbitMQ does not answer at ${redact(env.RABBITMQ_URL)} (${rabbit}). Start it (\`rabbitmq-server -detached\`, or \`docker compose up -d rabbitmq redis\`) or set RABBITMQ_URL.`)
// Through Sentinel (REDIS_SENTINELS) the services ask a Sentinel for the primary: one of them must answer.
const sentinels = (env.REDIS_SENTINELS ?? '').trim()
const redisAt = sentinels === '' ? env.REDIS_URL : sentinels.split(',').map(s => `redis://${s.trim()}`).join(',')
const redis = await probeAny(redisAt, 6379, 6379, Buffer.from('PING\r\n'), b => /^[+-]/.test(b.toString('latin1')))
if (redis !== true) problems.push(`Redis does not answer at ${redact(redisAt)} (${redis}). Start it (\`redis-server --daemonize yes --bind 127.0.0.1\`, or \`docker compose up -d rabbitmq redis\`) or set ${sentinels === '' ? 'REDIS_URL' : 'REDIS_SENTINELS'}.`)
// Each service's listeners: its public one (`listen`) and its metrics one (`metrics`, with the default of its
// config.ts; port 0 is any free port), from services/services.json.
const listeners = SERVICES.flatMap(({ name, listen, metrics }) => [listen, metrics].filter(l => l !== undefined).map(l => ({ svc: name, ...l })))
for (const { svc, host: h, port: p, default: def } of listeners) {
  if (!selected.includes(svc)) continue
  if (def !== undefined) env[p] ||= def
  if (env[p] === '0') continue
  for (let r = 1; r <= REPLICAS; r++) {
    const port = Number(env[p]) + 100 * (r - 1)
    const err = await portFree(env[h], port)
    if (err !== undefined) problems.push(`${r === 1 ? svc : `${svc}#${r}`} cannot listen on ${env[h]}:${port} (${err}): is another \`npm start\` running? Set ${p} to use another port.`)
  }
}
if (problems.length > 0) {
  for (const p of problems) say(p, 'error')
  process.exit(1)
}

/**
 * True when something at `url` answers `hello` the way `ok` expects (the AMQP protocol header gets a
 * Connection.Start frame or the header back; PING gets a Redis reply); otherwise why not. TLS URLs only get a
 * TCP connect.
 */
async function probe (url, plainPort, tlsPort, hello, ok) {
  const u = new URL(url)
  const tls = u.protocol === 'amqps:' || u.protocol === 'rediss:'
  const host = u.hostname.replace(/^\[|\]$/g, '')
  const port = Number(u.port || (tls ? tlsPort : plainPort))
  return await new Promise(resolve => {
    const s = netConnect({ host, port })
    let settled = false
    const done = (r) => { if (!settled) { settled = true; s.destroy(); resolve(r) } }
    s.setTimeout(3000, () => done('no answer within 3 s'))
    s.once('error', (e) => done(e.code ?? e.message))
    s.once('connect', () => { if (tls) done(true); else s.write(hello) })
    s.once('data', (b) => done(ok(b) ? true : 'unexpected reply'))
    s.once('end', () => done('connection closed'))
  })
}

/** `probe` for each node of a comma-separated list (RABBITMQ_URL of a cluster): true when one answers, else the first's reason. */
async function probeAny (list, ...rest) {
  const entries = list.split(',').map(s => s.trim()).filter(s => s !== '')
  let first
  for (const [i, e] of entries.entries()) {
    const url = i === 0 || /^[a-z]+:\/\//i.test(e) ? e : `${new URL(entries[0]).protocol}//${e}`
    const r = await probe(url, ...rest)
    if (r === true) return true
    first ??= r
  }
  return first
}

async function portFree (host, port) {
  return await new Promise(resolve => {
    const s = createServer()
    s.once('error', (e) => resolve(e.code ?? e.message))
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(undefined)))
  })
}

// --- supervision ----------------------------------------------------------------------------------------
const BACKOFF_MIN = 500
const BACKOFF_MAX = 30_000
const STABLE_MS = 60_000
const STOP_GRACE_MS = 10_000
// A service's exit code after `<name>: bad configuration: <VARIABLE>: <why>` on stderr
// (EXIT_BAD_CONFIG in packages/shared/src/service): not restarted.
const EXIT_BAD_CONFIG = 2
const BAD_CONFIG_LINE = /^(\S+): bad configuration: (.+)$/
// The agents let running power actions finish and report first (AGENT_STOP_GRACE_SECONDS, default 90).
const agentGrace = /^\d+$/.test(process.env.AGENT_STOP_GRACE_SECONDS ?? '') ? Number(process.env.AGENT_STOP_GRACE_SECONDS) : 90
const stopGraceMs = (name) => name.split('#')[0] === 'agents' ? (agentGrace + 10) * 1000 : STOP_GRACE_MS

let stopping = false
let stoppingSince = 0
/** @type {Map<string, {child?: import('node:child_process').ChildProcess, failures: number, timer?: NodeJS.Timeout, startedAt: number, ready: boolean, badSetting?: string}>} */
const instances = selected.flatMap(n => Array.from({ length: REPLICAS }, (_, i) => i === 0 ? n : `${n}#${i + 1}`))
const procs = new Map(instances.map(n => [n, { failures: 0, startedAt: 0, ready: false }]))
/** Services that exited on a bad setting, with what they said about it. */
const badConfig = []
let announced = false

function run (name) {
  const st = procs.get(name)
  st.timer = undefined
  st.startedAt = Date.now()
  st.ready = false
  st.badSetting = undefined
  const [svc, replica] = name.split('#')
  const child = spawn(process.execPath, ['--enable-source-maps', mainOf(svc)], { cwd: ROOT, env: envFor(svc, Number(replica ?? 1)), stdio: ['ignore', 'pipe', 'pipe'] })
  st.child = child
  const onLine = (line) => {
    if (raw) process.stdout.write(line + '\n')
    else process.stdout.write(`${tag(name)} ${line}\n`)
    const bad = BAD_CONFIG_LINE.exec(line)
    if (bad !== null && bad[1] === svc) st.badSetting = bad[2]
    if (!st.ready && line.includes('"msg":"ready"')) {
      st.ready = true
      if (announced) say(`${name} ready again`)
      else onReady()
    }
  }
  lines(child.stdout, onLine)
  lines(child.stderr, onLine)
  child.once('error', (err) => say(`${name} could not be started: ${err.message}`, 'error'))
  // 'close' rather than 'exit': it comes after the last output line, so nothing is cut off.
  child.once('close', (code, signal) => {
    st.child = undefined
    if (code === EXIT_BAD_CONFIG) {
      badConfig.push({ name, problem: st.badSetting ?? `exit code ${EXIT_BAD_CONFIG}, a bad setting (see its lines above)` })
      if (!stopping) {
        const others = [...procs.keys()].filter(n => n !== name)
        say(`${name} exited on a bad setting; not restarting it${others.length > 0 ? `, stopping ${others.join(', ')}` : ''}`, 'error')
        void stopAll('bad configuration')
      }
      return
    }
    if (stopping) return
    const ranFor = Date.now() - st.startedAt
    if (ranFor >= STABLE_MS) st.failures = 0
    const delay = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** st.failures)
    st.failures++
    say(`${name} exited (${signal ?? `code ${code}`}) after ${(ranFor / 1000).toFixed(1)} s; restarting in ${(delay / 1000).toFixed(1)} s (restart ${st.failures})`, 'warn')
    st.timer = setTimeout(() => run(name), delay)
  })
}

function onReady () {
  if (announced || ![...procs.values()].every(s => s.ready)) return
  announced = true
  const out = [REPLICAS === 1 ? `all ${procs.size} services ready` : `all ${procs.size} processes ready: ${REPLICAS} replicas of ${selected.join(', ')}`]
  if (procs.has('api')) out.push(`API ${apiUrl}  (docs ${apiUrl}/docs, metrics ${apiUrl}/metrics)${REPLICAS > 1 ? `; replicas on ports ${Array.from({ length: REPLICAS }, (_, i) => Number(env.API_PORT) + 100 * i).join(', ')}` : ''}`)
  if (procs.has('console-gateway')) out.push(`console gateway ${env.PUBLIC_GATEWAY_URL}${REPLICAS > 1 ? `; replicas on ports ${Array.from({ length: REPLICAS }, (_, i) => Number(env.GATEWAY_PORT) + 100 * i).join(', ')}, each serving any console URL` : ''}`)
  out.push(process.env.PORTHOLE_ADMIN_TOKEN ? 'admin token: PORTHOLE_ADMIN_TOKEN from your environment' : `admin token: PORTHOLE_ADMIN_TOKEN in ${rel(LOCAL_ENV)}`)
  out.push('try it: npm run demo')
  for (const l of out) say(l)
}

function lines (stream, onLine) {
  let buf = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk) => {
    buf += chunk
    let i
    while ((i = buf.indexOf('\n')) !== -1) { onLine(buf.slice(0, i)); buf = buf.slice(i + 1) }
  })
  stream.on('end', () => { if (buf !== '') onLine(buf) })
}

async function stopAll (signal) {
  if (stopping) {
    if (signal === 'bad configuration') return
    // The same signal often arrives twice at once (Ctrl-C reaches the whole process group, `timeout` and
    // npm forward it too); only a deliberate second one, a second later, kills.
    if (Date.now() - stoppingSince < 1000) return
    say(`${signal} again: killing`, 'warn')
    for (const s of procs.values()) s.child?.kill('SIGKILL')
    return
  }
  stopping = true
  stoppingSince = Date.now()
  if (signal !== 'bad configuration') say(`${signal}: stopping ${[...procs.keys()].join(', ')}`)
  const waits = []
  for (const [name, s] of procs) {
    if (s.timer !== undefined) clearTimeout(s.timer)
    const child = s.child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) continue
    waits.push(new Promise(resolve => {
      const kill = setTimeout(() => { say(`${name} still running after ${stopGraceMs(name) / 1000} s: SIGKILL`, 'warn'); child.kill('SIGKILL') }, stopGraceMs(name))
      // A bad setting found as it stops (e.g. LOG_LEVEL, which all four read) is said in the last line instead;
      // a service still loading has no handler yet and ends by the SIGTERM itself.
      child.once('close', (code, sig) => { clearTimeout(kill); resolve(code === 0 || code === EXIT_BAD_CONFIG || (code === null && (sig === 'SIGINT' || sig === 'SIGTERM')) ? 0 : 1) })
      child.kill('SIGTERM')
    }))
  }
  const codes = await Promise.all(waits)
  const bad = codes.filter(c => c !== 0).length
  say(bad === 0 ? 'stopped' : `stopped (${bad} service(s) did not exit cleanly)`, bad === 0 ? 'info' : 'warn')
  if (badConfig.length > 0) {
    // The last line says it all: which service, which setting, why (one line per distinct problem, so a
    // setting all four share, e.g. LOG_LEVEL, is one line).
    const byProblem = new Map()
    for (const { name, problem } of badConfig) byProblem.set(problem, [...(byProblem.get(problem) ?? []), name])
    for (const [problem, who] of byProblem) say(`${who.join(', ')}: bad configuration: ${problem} — fix the setting and start again`, 'error')
    process.exit(EXIT_BAD_CONFIG)
  }
  process.exit(bad === 0 ? 0 : 1)
}

process.on('SIGINT', () => { void stopAll('SIGINT') })
process.on('SIGTERM', () => { void stopAll('SIGTERM') })

if (created.includes('PORTHOLE_ADMIN_TOKEN')) {
  say(`generated ${created.join(', ')} into ${rel(LOCAL_ENV)} (mode 0600; kept for the next start)`)
  // Shown once, on a terminal only, at creation: a local quick start needs it; logs never get it.
  if (process.stdout.isTTY === true) say(`admin token (shown once; also in ${rel(LOCAL_ENV)}): ${secrets.PORTHOLE_ADMIN_TOKEN}`)
} else if (created.length > 0) {
  say(`generated ${created.join(', ')} into ${rel(LOCAL_ENV)} (mode 0600)`)
}
say(`starting ${selected.join(', ')}: RabbitMQ ${redact(env.RABBITMQ_URL)}, Redis ${redact(env.REDIS_URL)}`)
for (const n of instances) run(n)
