/**
 * Power-job latency per agent type, in one run, through the real pipeline (API, RabbitMQ, receiver, agents,
 * Redis) against real targets: tiny libvirt domains (kvm), OpenIPMI `ipmi_sim` BMCs (ipmi) and the oVirt
 * API simulator of the agents' tests (ovirt). For each type, from the API call to the job's final state:
 * "on" of a running server (the common no-op), "off" then "on" (state changes) and status, from 1 and 10
 * clients. Beside them, measured in the same run, the raw cost of the underlying tool (one ipmitool
 * subprocess, one HTTPS GET, one virsh / libvirt call), so that the reader sees what Porthole adds.
 *
 * The agents' polling and pacing settings shape the state-change rows; the run uses the agents' defaults and
 * prints them, then restarts the agents with faster polling and repeats the state-change rows, labelled.
 *
 *   npm run bench -- agents [--quick]
 *
 * The simulators come from the test kit (@porthole/testkit); the agents' settings are read from their own
 * "ready" log line.
 */
import { execFile } from 'node:child_process'
import https from 'node:https'
import { loadavg } from 'node:os'
import { promisify } from 'node:util'
import { Hypervisor } from '@unraid/libvirt'
import { TEST_LIBVIRT_URI, startStack, tinyDomain, waitFor, type Stack, type TinyDomain } from '@porthole/testkit'
import { startIpmiSim, type IpmiSim } from '@porthole/testkit/ipmi'
import { startOvirtSimulator } from '@porthole/testkit/ovirt'
import { UNCAPPED, summarize, table, type Summary } from './stats.js'

const run = promisify(execFile)
const quick = process.argv.includes('--quick')
const cleanups: Array<() => Promise<void>> = []
const t = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }
type After = typeof t

/** Clean-ups of one agent type's targets, run when its part is done (or at exit, whichever comes first). */
function scope (): { t: After, close: () => Promise<void> } {
  const fns: Array<() => Promise<void>> = []
  const close = async (): Promise<void> => { for (const fn of fns.splice(0).reverse()) await fn().catch(() => {}) }
  cleanups.push(close)
  return { t: { after: fn => { fns.push(fn) } }, close }
}

/** Servers per type: one per client at concurrency 10, so that no two clients ever share a server. */
const SERVERS = 10
const CLIENTS = [1, 10] as const
const FAST_POLL = { KVM_POLL_MS: '50', IPMI_POLL_MS: '100', OVIRT_POLL_MS: '100' }
/** The oVirt simulator's time per state step (its default): start is down → wait_for_launch → powering_up → up. */
const OVIRT_TRANSITION_MS = 300


/** Per-call latencies of one kind, and the wall time of the phases they ran in. */
interface Timing { lat: number[], ms: number }
const timing = (): Timing => ({ lat: [], ms: 0 })
const summary = (x: Timing): Summary => summarize(x.lat, x.ms / 1000)

/**
 * `clients` workers at once, `calls` calls each; worker k's j-th call goes to target (k + (from + j) * clients)
 * mod n. With n a multiple of `clients`, no two workers ever share a target: at 1 client it rotates over all
 * of them, at 10 each worker keeps its own.
 */
async function phase<T> (targets: readonly T[], clients: number, calls: number, from: number, fn: (x: T) => Promise<void>, into: Timing): Promise<void> {
  if (targets.length % clients !== 0) throw new Error(`${targets.length} targets cannot be split over ${clients} clients`)
  const t0 = performance.now()
  await Promise.all(Array.from({ length: clients }, async (_, k) => {
    for (let j = 0; j < calls; j++) {
      const x = targets[(k + (from + j) * clients) % targets.length] as T
      const s = performance.now()
      await fn(x)
      into.lat.push(performance.now() - s)
    }
  }))
  into.ms += performance.now() - t0
}

type AgentType = 'kvm' | 'ipmi' | 'ovirt'
interface Fleet {
  type: AgentType
  ids: string[]
  /** The raw cost of asking the target for its power state, without Porthole: label and one call. */
  tools: Array<{ what: string, call: (i: number) => Promise<void> }>
  /** The raw state change without Porthole (no confirmation): power target i off, and on again. */
  toolCycle: { off: string, on: string, call: (i: number, action: 'off' | 'on') => Promise<void> }
  /** True when every target is powered on, as the target itself says. */
  allOn: () => Promise<boolean>
  /** What the agent does per job, for the notes. */
  notes: string
}

async function kvmFleet (t: After, stack: Stack, tenant: string): Promise<Fleet> {
  const doms: TinyDomain[] = []
  for (let i = 0; i < SERVERS; i++) doms.push(await tinyDomain(t, { vnc: false }))
  const ids = await register(stack, tenant, 'kvm', doms.map(d => ({ name: d.name, connection: { uri: d.uri, domain: d.name } })))
  // What the agent itself does per job: a domain lookup and a state read over one kept connection, through
  // the libvirt binding the agents use (resolved from the workspace root).
  const hv = new Hypervisor({ uri: TEST_LIBVIRT_URI })
  await hv.connectOpen()
  t.after(async () => { await hv.connectClose() })
  return {
    type: 'kvm',
    ids,
    tools: [
      {
        what: 'tool: virsh domstate (subprocess)',
        call: async (i) => {
          const { stdout } = await run('virsh', ['-c', TEST_LIBVIRT_URI, 'domstate', (doms[i] as TinyDomain).name], { timeout: 30_000 })
          if (stdout.trim() !== 'running') throw new Error(`virsh domstate: ${stdout.trim()}`)
        }
      },
      {
        what: 'tool: libvirt lookup + getInfo (kept connection)',
        call: async (i) => {
          const info = await hv.domainGetInfo(await hv.domainLookupByName((doms[i] as TinyDomain).name))
          if (info.state !== 1) throw new Error(`domain state ${info.state}, expected 1 (running)`)
        }
      }
    ],
    toolCycle: {
      off: 'tool: virsh destroy (subprocess)',
      on: 'tool: virsh start (subprocess)',
      call: async (i, action) => { await run('virsh', ['-c', TEST_LIBVIRT_URI, action === 'off' ? 'destroy' : 'start', (doms[i] as TinyDomain).name], { timeout: 60_000 }) }
    },
    allOn: async () => (await Promise.all(doms.map(async d => await d.state()))).every(s => s === 'running'),
    notes: 'kvm: status and "on" of a running domain = one lookup + one state read over a kept libvirt connection; ' +
      '"off" = destroy + one read; "on" = create (qemu starts) + one read. KVM_POLL_MS is used only by shutdown and reboot. ' +
      'libvirtd runs at most max_client_requests (default 5) calls of one connection at a time, so the agent keeps ' +
      'KVM_CONNECTIONS_PER_URI (default 4) connections per URI and uses them in turn (virsh opens a connection per call).'
  }
}

/** One ipmitool call with the agent's own argv (lanplus, cipher suite 3, -N 1 -R 1, -v), password through the environment. */
async function ipmitool (s: IpmiSim, command: 'status' | 'on' | 'off'): Promise<string> {
  const { stdout } = await run('ipmitool', ['-v', '-I', 'lanplus', '-C', '3', '-H', s.host, '-p', String(s.port), '-U', s.username, '-E', '-N', '1', '-R', '1', 'chassis', 'power', command],
    { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', IPMI_PASSWORD: s.password }, timeout: 15_000 })
  return stdout
}

async function ipmiFleet (t: After, stack: Stack, tenant: string): Promise<Fleet> {
  const sims: IpmiSim[] = []
  for (let i = 0; i < SERVERS; i++) sims.push(await startIpmiSim(t, { power: 'on' }))
  const ids = await register(stack, tenant, 'ipmi', sims.map((s, i) => ({
    name: `bmc-${i}`, connection: { host: s.host, port: s.port, username: s.username, password: s.password }
  })))
  return {
    type: 'ipmi',
    ids,
    tools: [{
      what: 'tool: ipmitool chassis power status (subprocess)',
      call: async (i) => {
        const out = await ipmitool(sims[i] as IpmiSim, 'status')
        if (!/Chassis Power is on/i.test(out)) throw new Error(`ipmitool: ${out.trim()}`)
      }
    }],
    toolCycle: {
      off: 'tool: ipmitool chassis power off (subprocess)',
      on: 'tool: ipmitool chassis power on (subprocess)',
      call: async (i, action) => { await ipmitool(sims[i] as IpmiSim, action) }
    },
    allOn: async () => (await Promise.all(sims.map(async s => await s.power()))).every(p => p === 'on'),
    notes: 'ipmi: status and "on" of a running host = one ipmitool call; "off" and "on" = three (read, set, confirming read), ' +
      'each at least IPMI_MIN_INTERVAL_MS after the previous one to that BMC; IPMI_POLL_MS applies only when the confirming read ' +
      'still shows the old state (ipmi_sim switches at once, so never here). An "on" right after an "off" of the same BMC also ' +
      'waits out the interval since the off\'s last command.'
  }
}

async function ovirtFleet (t: After, stack: Stack, tenant: string): Promise<Fleet> {
  // SSO tokens live an hour, as engines' do by default, so that the bench's own token outlives the run.
  const sim = await startOvirtSimulator(t, { transitionMs: OVIRT_TRANSITION_MS, tokenLifetimeMs: 3_600_000 })
  const vms = Array.from({ length: SERVERS }, () => sim.addVm({ status: 'up' }))
  const ids = await register(stack, tenant, 'ovirt', vms.map((vm, i) => ({
    name: `ovirt-${i}`, connection: { url: sim.url, username: sim.username, password: sim.password, vmId: vm.id, caCert: sim.caCert }
  })))
  // As the agent's client does it: HTTPS with the engine's CA, kept-alive sockets (at most 8), a bearer token.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 8, ca: sim.caCert })
  t.after(async () => { agent.destroy() })
  const request = async (method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number, text: string }> =>
    await new Promise((resolve, reject) => {
      const req = https.request(`${sim.url}${path}`, { method, agent, headers }, (res) => {
        let text = ''
        res.setEncoding('utf8').on('data', (d: string) => { text += d }).on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      })
      req.once('error', reject)
      req.end(body)
    })
  const form = new URLSearchParams({ grant_type: 'password', scope: 'ovirt-app-api', username: sim.username, password: sim.password }).toString()
  const sso = await request('POST', '/sso/oauth/token', { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, form)
  const token = (JSON.parse(sso.text) as { access_token: string }).access_token
  return {
    type: 'ovirt',
    ids,
    tools: [{
      what: 'tool: HTTPS GET /api/vms/{id} (kept-alive)',
      call: async (i) => {
        const r = await request('GET', `/api/vms/${(vms[i] as { id: string }).id}`, { authorization: `Bearer ${token}`, accept: 'application/json' })
        if (r.status !== 200 || (JSON.parse(r.text) as { status?: string }).status !== 'up') throw new Error(`GET vm: ${r.status}`)
      }
    }],
    toolCycle: {
      off: 'tool: HTTPS POST /api/vms/{id}/stop',
      on: 'tool: HTTPS POST /api/vms/{id}/start',
      call: async (i, action) => {
        const r = await request('POST', `/api/vms/${(vms[i] as { id: string }).id}/${action === 'off' ? 'stop' : 'start'}`,
          { authorization: `Bearer ${token}`, accept: 'application/json', 'content-type': 'application/json' }, '{}')
        if (r.status !== 200) throw new Error(`POST ${action}: ${r.status} ${r.text}`)
      }
    },
    allOn: async () => vms.every(v => sim.vm(v.id)?.status === 'up'),
    notes: `ovirt: status and "on" of a running VM = one GET; "off" = GET, POST stop, GET (the simulator stops at once); ` +
      `"on" = GET, POST start, GET (wait_for_launch), OVIRT_POLL_MS later GET (powering_up counts as on; the simulator takes ` +
      `${OVIRT_TRANSITION_MS} ms per step). The simulator runs inside the bench process.`
  }
}

async function register (stack: Stack, tenant: string, agent: AgentType, list: Array<{ name: string, connection: Record<string, unknown> }>): Promise<string[]> {
  const ids: string[] = []
  for (const s of list) {
    const r = await stack.api('POST', '/v1/servers', { name: s.name, tenantId: tenant, agent, connection: s.connection })
    if (r.status !== 201) throw new Error(`register ${agent} server: ${r.status} ${JSON.stringify(r.body)}`)
    ids.push(r.body.id as string)
  }
  return ids
}

/** One power job, waited for; checks that it succeeded and did (or did not) change the power state. */
async function power (stack: Stack, id: string, action: 'on' | 'off', changed: boolean): Promise<void> {
  const r = await stack.api('POST', `/v1/servers/${id}/power?wait=60`, { action })
  if (r.status !== 200 || r.body.state !== 'succeeded') throw new Error(`power ${action}: ${r.status} ${JSON.stringify(r.body)}`)
  if (r.body.result?.changed !== changed || r.body.result?.power !== action) throw new Error(`power ${action}: unexpected result ${JSON.stringify(r.body.result)}`)
}

async function status (stack: Stack, id: string): Promise<void> {
  const r = await stack.api('GET', `/v1/servers/${id}/status`)
  if (r.status !== 200 || r.body.power !== 'on') throw new Error(`status: ${r.status} ${JSON.stringify(r.body)}`)
}

const counts = quick
  ? { tool: [20, 5], status: [20, 6], noop: [10, 4], cycles: [3, 1] }
  : { tool: [60, 20], status: [60, 30], noop: [40, 20], cycles: [10, 3] }
/** Calls per client at concurrency c (index 0 for 1 client, 1 for 10). */
const per = (kind: keyof typeof counts, c: number): number => counts[kind][c === 1 ? 0 : 1] as number

type Row = Record<string, string | number>
const row = (type: string, action: string, c: number, s: Summary): Row =>
  ({ type, action, clients: c, jobs: s.n, 'jobs/s': s.perSecond, 'p50 ms': s.p50, 'p99 ms': s.p99, 'max ms': s.max })

async function warmUp (stack: Stack, f: Fleet): Promise<void> {
  const ignore = timing()
  await phase(f.ids, SERVERS, 2, 0, async id => await status(stack, id), ignore)
  await phase(f.ids, SERVERS, 1, 0, async id => await power(stack, id, 'on', false), ignore)
}

/** off then on, `rounds` times, each round one barrier-separated phase per action; latencies per action. */
async function cycles (stack: Stack, f: Fleet, c: number, rounds: number): Promise<{ off: Summary, on: Summary }> {
  const off = timing()
  const on = timing()
  for (let r = 0; r < rounds; r++) {
    await phase(f.ids, c, 1, r, async id => await power(stack, id, 'off', true), off)
    await phase(f.ids, c, 1, r, async id => await power(stack, id, 'on', true), on)
  }
  return { off: summary(off), on: summary(on) }
}

async function bench (stack: Stack, f: Fleet, rows: Row[]): Promise<Map<string, Summary>> {
  const p50 = new Map<string, Summary>()
  await warmUp(stack, f)
  const idx = f.ids.map((_, i) => i)
  for (const c of CLIENTS) {
    for (const tool of f.tools) {
      const x = timing()
      await phase(idx, c, per('tool', c), 0, tool.call, x)
      rows.push(row(f.type, tool.what, c, summary(x)))
      p50.set(`${tool.what}/${c}`, summary(x))
    }
    const st = timing()
    await phase(f.ids, c, per('status', c), 0, async id => await status(stack, id), st)
    rows.push(row(f.type, 'status job (GET …/status)', c, summary(st)))
    p50.set(`status/${c}`, summary(st))
    const noop = timing()
    await phase(f.ids, c, per('noop', c), 0, async id => await power(stack, id, 'on', false), noop)
    rows.push(row(f.type, 'on, already on (no-op)', c, summary(noop)))
    const toolOff = timing()
    const toolOn = timing()
    for (let r = 0; r < per('cycles', c); r++) {
      await phase(idx, c, 1, r, async i => await f.toolCycle.call(i, 'off'), toolOff)
      await phase(idx, c, 1, r, async i => await f.toolCycle.call(i, 'on'), toolOn)
    }
    rows.push(row(f.type, f.toolCycle.off, c, summary(toolOff)), row(f.type, f.toolCycle.on, c, summary(toolOn)))
    p50.set(`tool off/${c}`, summary(toolOff)).set(`tool on/${c}`, summary(toolOn))
    await waitFor(f.allOn, 5000, `every ${f.type} target on again`, 50)
    const cy = await cycles(stack, f, c, per('cycles', c))
    rows.push(row(f.type, 'off (was on)', c, cy.off), row(f.type, 'on (was off)', c, cy.on))
    p50.set(`off/${c}`, cy.off).set(`on/${c}`, cy.on)
  }
  await waitFor(f.allOn, 5000, `every ${f.type} target on again`, 50)
  return p50
}

/** The warning and error lines the services wrote (by service and message, counted): signs of a disturbed run. */
function warnings (stack: Stack): string {
  const seen = new Map<string, number>()
  for (const l of stack.logLines) {
    if (!l.startsWith('{')) continue
    try {
      const j = JSON.parse(l) as { level?: number, service?: string, msg?: string }
      if ((j.level ?? 0) >= 40) { const k = `${j.service ?? '?'}: ${j.msg ?? ''}`; seen.set(k, (seen.get(k) ?? 0) + 1) }
    } catch { /* not JSON */ }
  }
  return seen.size === 0 ? 'none' : [...seen].map(([k, n]) => `${n} × "${k}"`).join(', ')
}

/** The pacing settings the agents say they run with, from their (first) "ready" line. */
function agentsPacing (stack: Stack): Record<string, unknown> {
  for (const l of stack.logLines) {
    if (!l.includes('"msg":"ready"')) continue
    const j = JSON.parse(l) as { service?: string, pacing?: Record<string, unknown> }
    if (j.service === 'agents' && j.pacing !== undefined) return j.pacing
  }
  throw new Error('the agents\' "ready" line carries no pacing settings')
}

async function main (): Promise<void> {
  const load0 = loadavg()
  const started = new Date()
  // LOG_LEVEL=info, not warn: startStack waits for each service's "ready" line, which is logged at info (at
  // warn no service would ever be seen as ready). That costs four short JSON lines per job.
  const stack = await startStack(t, { env: { LOG_LEVEL: 'info' }, envFor: { receiver: UNCAPPED } })
  const pacing = agentsPacing(stack)
  const setting = (k: string): string => String(pacing[k])
  const tenant = (await stack.api('POST', '/v1/tenants', { name: 'bench-agents' })).body.id as string
  const rows: Row[] = []
  const fast: Row[] = []
  const context: string[] = []
  const notes: string[] = []
  // One type at a time, with only its own targets alive (booting qemu processes would disturb the others);
  // kvm last. Each type: the agents' defaults, then the agents restarted with faster polling for the state
  // changes (nothing else polls), then back to the defaults.
  const builders = [ipmiFleet, ovirtFleet, kvmFleet]
  for (const build of builders) {
    const sc = scope()
    const f = await build(sc.t, stack, tenant)
    notes.push(f.notes)
    if (f.type === 'kvm') await new Promise(resolve => setTimeout(resolve, 10_000)) // let the new domains finish booting
    const s = await bench(stack, f, rows)
    const ms = (k: string): string => `${(s.get(k) as Summary).p50.toFixed(1)} ms`
    const plain = (w: string): string => w.replace(/^tool: /, '')
    context.push(`  ${f.type}: status: ${f.tools.map(x => `${plain(x.what)} ${ms(`${x.what}/1`)}`).join(', ')} → status job ${ms('status/1')}; ` +
      `off: ${plain(f.toolCycle.off)} ${ms('tool off/1')} → job ${ms('off/1')}; on: ${plain(f.toolCycle.on)} ${ms('tool on/1')} → job ${ms('on/1')}`)

    await stack.stop('agents')
    await stack.start('agents', FAST_POLL)
    await warmUp(stack, f)
    for (const c of CLIENTS) {
      const cy = await cycles(stack, f, c, per('cycles', c))
      fast.push(row(f.type, 'off (was on)', c, cy.off), row(f.type, 'on (was off)', c, cy.on))
    }
    await waitFor(f.allOn, 5000, `every ${f.type} target on again`, 50)
    await stack.stop('agents')
    await stack.start('agents')
    await sc.close()
  }
  const load1 = loadavg()

  const la = (l: number[]): string => l.map(x => x.toFixed(2)).join(' ')
  console.log(`\nPorthole agents benchmark (${started.toISOString()}, ${quick ? 'quick' : 'full'} run, ${SERVERS} servers per type: ` +
    `tiny KVM domains, ipmi_sim BMCs, VMs of the oVirt API simulator)`)
  console.log('Latency is from the API call to the job\'s final state: POST /v1/servers/{id}/power?wait=60 (the answer carries the finished job) ' +
    'and GET /v1/servers/{id}/status. Every job is checked (succeeded; changed or not as expected). At 10 clients each client keeps one server ' +
    '(one power job per server at a time is by design); at 1 client the calls rotate over all servers. "off"/"on" rows alternate in rounds.')
  console.log(`Agents' settings: their defaults — KVM_POLL_MS=${setting('KVM_POLL_MS')} IPMI_POLL_MS=${setting('IPMI_POLL_MS')} ` +
    `OVIRT_POLL_MS=${setting('OVIRT_POLL_MS')} IPMI_MIN_INTERVAL_MS=${setting('IPMI_MIN_INTERVAL_MS')} AGENT_PREFETCH=${setting('AGENT_PREFETCH')}; ` +
    'LOG_LEVEL=info (at warn the "ready" line startStack waits for is not written; about four log lines per job).\n')
  console.log(table(rows))
  console.log('\nRaw cost of the underlying tool against the same targets, measured in this run, beside the job (p50, 1 client; the tool rows do not confirm):')
  console.log(context.join('\n'))
  console.log('\nWhat each job does at the target:')
  for (const n of notes) console.log(`  ${n}`)
  console.log(`\nSecond pass, agents restarted with FASTER POLLING (${Object.entries(FAST_POLL).map(([k, v]) => `${k}=${v}`).join(' ')}; ` +
    `IPMI_MIN_INTERVAL_MS still ${setting('IPMI_MIN_INTERVAL_MS')}), state changes only:\n`)
  console.log(table(fast))
  console.log(`\nLoad average (1/5/15 min) before ${la(load0)}, after ${la(load1)} on a machine with other work possibly running; ` +
    `warning or error log lines from the services: ${warnings(stack)}.`)
}

try {
  await main()
} finally {
  for (const fn of cleanups.reverse()) await fn().catch(() => {})
}
