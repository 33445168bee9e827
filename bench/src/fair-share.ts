/**
 * Fair share between tenants: tenant B's status-job latency (one client) while tenant A floods status jobs
 * from many concurrent clients, against B alone in the same run, through the real API, RabbitMQ, receiver,
 * kvm agent, libvirt and Redis. The same flood once more with the receiver's per-tenant cap lifted
 * (TENANT_MAX_IN_FLIGHT=100000, as before the cap) is the peer: what the cap changes. The flood runs once
 * per cap in `--caps` (the receiver restarted with it), and once as deployed by default (`limits`: the default
 * cap and the API's default per-key request limit for customer keys, RATE_LIMIT_CUSTOMER=300 a minute; A and B
 * each get fresh keys for it, so B's own earlier rounds do not count against it, and A's flood, which ignores
 * its 429s and Retry-After, goes on at full speed).
 *
 *   npm run bench -- fair-share [--quick] [--flood=50] [--caps=4,8,32,100000] [--rounds=3] [--no-limits]
 */
import { startStack, tinyDomain, type Stack } from '@porthole/testkit'
import { UNCAPPED, closedLoop, jsonClient, percentile, table, type Summary } from './stats.js'
import { processCpuMs } from './cpu.js'

const quick = process.argv.includes('--quick')
const arg = (name: string): string | undefined => process.argv.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const floodClients = Number(arg('flood') ?? 50)
// The receiver's cap for each flood; 100000 is no cap at all (as before the cap).
const caps = (arg('caps') ?? `4,8,32,${UNCAPPED.TENANT_MAX_IN_FLIGHT}`).split(',').map(Number)
const DEFAULT_CAP = 4
const withLimits = !process.argv.includes('--no-limits')
/** The API's default request limit of a customer key (RATE_LIMIT_CUSTOMER; test stacks lift it). */
const DEFAULT_CUSTOMER_RATE_LIMIT = '300'
const cleanups: Array<() => Promise<void>> = []
const t = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }

type Client = ReturnType<typeof jsonClient>

async function status (api: Client, server: string, flood = false): Promise<number> {
  const r = await api('GET', `/v1/servers/${server}/status`)
  if (flood && r.status === 503) return 503 // counted: a flood may outrun what the broker confirms in time
  // 429: refused by a limit (the `limits` configuration), which a flooding client meets and ignores.
  if (r.status !== 200 && r.status !== 202 && r.status !== 429) throw new Error(`status ${r.status}: ${JSON.stringify(r.body)}`)
  return r.status
}

/** Where B's last `n` jobs spent their time: medians (ms) between the steps of their histories. */
async function phases (b: Client, server: string, n: number): Promise<Record<string, number>> {
  const r = await b('GET', `/v1/jobs?serverId=${server}&limit=${Math.min(500, n)}`)
  const jobs = r.body as Array<{ history: Array<{ state: string, at: string }> }>
  const gap = (from: string, to: string): number => percentile(jobs.map(j => {
    const at = (s: string): number => Date.parse(j.history.find(h => h.state === s)?.at ?? '')
    return at(to) - at(from)
  }).filter(Number.isFinite).sort((x, y) => x - y), 50)
  return { 'queued → dispatched': gap('queued', 'dispatched'), 'dispatched → running': gap('dispatched', 'running'), 'running → succeeded': gap('running', 'succeeded') }
}

/** B's jobs while A floods: A's clients start first and run until B's jobs are done. */
async function underFlood (a: Client, aServers: string[], b: Client, bServer: string, total: number): Promise<{ b: Summary, aPerSecond: number, aUnanswered: number, aRefused: number }> {
  let stop = false
  let aDone = 0
  let aUnanswered = 0
  let aRefused = 0
  let aUnavailable = 0
  // A failing flood client stops the flood and fails the run once B is done, through main's clean-up: an
  // unhandled rejection here would end the process with its services and VMs left running.
  let failure: unknown
  const flood = Promise.all(Array.from({ length: floodClients }, async (_, c) => {
    for (let i = c; !stop; i += floodClients) {
      const code = await status(a, aServers[i % aServers.length] as string, true)
      if (code === 503) aUnavailable++
      if (code === 429) aRefused++
      else if (code !== 200) aUnanswered++
      aDone++
    }
  })).catch((err: unknown) => { failure = err; stop = true })
  // Let the flood reach its steady state (every client waiting on a job) before B starts.
  while (aDone < floodClients * 2 && !stop) await new Promise(resolve => setTimeout(resolve, 20))
  const aStart = aDone
  const ta = performance.now()
  const bs = await closedLoop(1, total, async () => { await status(b, bServer) })
  const aPerSecond = (aDone - aStart - aRefused) / ((performance.now() - ta) / 1000)
  stop = true
  await flood
  if (failure !== undefined) throw failure
  if (aUnavailable > 0) console.error(`A got ${aUnavailable} 503s (broker unavailable) in this flood`)
  return { b: bs, aPerSecond, aUnanswered, aRefused }
}

/** CPU seconds the stack's service processes and this process have used so far (from /proc). */
function cpuSeconds (stack: Stack): number {
  let ms = 0
  for (const proc of stack.procs.values()) ms += processCpuMs(proc.pid ?? 0) ?? 0 // a process gone counts nothing
  const own = process.cpuUsage()
  return ms / 1000 + (own.user + own.system) / 1e6
}

async function main (): Promise<void> {
  const stack: Stack = await startStack(t, { keepLogs: false, services: ['api', 'receiver', 'agents'], envFor: { agents: { AGENT_TYPES: 'kvm' } } })
  const tenantA = (await stack.api('POST', '/v1/tenants', { name: 'flood' })).body.id as string
  const tenantB = (await stack.api('POST', '/v1/tenants', { name: 'quiet' })).body.id as string
  const keyOf = async (tenantId: string): Promise<string> => (await stack.api('POST', '/v1/api-keys', { tenantId, role: 'customer', name: 'bench' })).body.key as string
  // Each tenant through its own key and its own connections, as two portals would call.
  const a = jsonClient(stack.apiUrl, await keyOf(tenantA), floodClients)
  const b = jsonClient(stack.apiUrl, await keyOf(tenantB), 4)
  const doms = []
  const aServers: string[] = []
  let bServer = ''
  for (let i = 0; i < 5; i++) {
    const d = await tinyDomain(t)
    doms.push(d)
    const tenantId = i === 0 ? tenantB : tenantA
    const r = await stack.api('POST', '/v1/servers', { name: d.name, tenantId, agent: 'kvm', connection: { uri: d.uri, domain: d.name } })
    if (i === 0) bServer = r.body.id as string; else aServers.push(r.body.id as string)
  }
  await Promise.all(doms.map(async d => await d.settled()))
  const total = quick ? 100 : 300
  const rounds = Number(arg('rounds') ?? (quick ? 3 : 5))
  // warm up every path (connections, JIT, libvirt)
  await closedLoop(5, 50, async (i) => { await status(i % 2 === 0 ? a : b, i % 2 === 0 ? aServers[0] as string : bServer) })

  // Rounds of [B alone, then the flood under each cap]: this machine's other load comes and goes, and each
  // configuration's figure is its median over the rounds, with B alone measured just as often beside it.
  const configs = ['alone', ...caps.map(String), ...(withLimits ? ['limits'] : [])]
  const seen = new Map<string, Array<{ b: Summary, aPerSecond: number, aUnanswered: number, aRefused: number, cpu: number, steps: Record<string, number> }>>()
  for (let r = 0; r < rounds; r++) {
    for (const c of configs) {
      let [ca, cb] = [a, b]
      if (c === 'limits') {
        await stack.stop('receiver')
        await stack.start('receiver', { TENANT_MAX_IN_FLIGHT: String(DEFAULT_CAP) })
        await stack.stop('api')
        await stack.start('api', { RATE_LIMIT_CUSTOMER: DEFAULT_CUSTOMER_RATE_LIMIT })
        ca = jsonClient(stack.apiUrl, await keyOf(tenantA), floodClients)
        cb = jsonClient(stack.apiUrl, await keyOf(tenantB), 4)
      } else if (c !== 'alone') {
        await stack.stop('receiver')
        await stack.start('receiver', { TENANT_MAX_IN_FLIGHT: c })
      }
      const cpu0 = cpuSeconds(stack)
      const w0 = performance.now()
      const f = c === 'alone'
        ? { b: await closedLoop(1, total, async () => { await status(b, bServer) }), aPerSecond: NaN, aUnanswered: 0, aRefused: 0 }
        : await underFlood(ca, aServers, cb, bServer, total)
      const cpu = (cpuSeconds(stack) - cpu0) / ((performance.now() - w0) / 1000)
      const list = seen.get(c) ?? []
      list.push({ ...f, cpu, steps: await phases(cb, bServer, total) })
      seen.set(c, list)
      if (c === 'limits') {
        // Back as the other configurations expect it.
        await stack.stop('api')
        await stack.start('api')
      }
    }
  }
  const med = (xs: number[]): number => percentile([...xs].sort((x, y) => x - y), 50)
  const alone = med((seen.get('alone') ?? []).map(x => x.b.p50))
  const rows: Array<Record<string, string | number>> = []
  const steps: Array<Record<string, string | number>> = []
  for (const c of configs) {
    const list = seen.get(c) ?? []
    const cap = Number(c)
    const what = c === 'alone'
      ? 'B alone (1 client)'
      : c === 'limits'
        ? `B while A floods (${floodClients} clients), as deployed: TENANT_MAX_IN_FLIGHT=${DEFAULT_CAP}, RATE_LIMIT_CUSTOMER=${DEFAULT_CUSTOMER_RATE_LIMIT}`
        : `B while A floods (${floodClients} clients), TENANT_MAX_IN_FLIGHT=${c}${cap === DEFAULT_CAP ? ' (default)' : cap >= 100_000 ? ' (no cap)' : ''}, no request limit`
    const p50 = med(list.map(x => x.b.p50))
    rows.push({
      what,
      'B p50 ms': p50,
      'B p99 ms': med(list.map(x => x.b.p99)),
      'B p50 / alone': c === 'alone' ? '' : p50 / alone,
      'A jobs/s': c === 'alone' ? '' : med(list.map(x => x.aPerSecond)),
      'A 202s': c === 'alone' ? '' : list.reduce((n, x) => n + x.aUnanswered, 0),
      'A 429s': c === 'alone' ? '' : list.reduce((n, x) => n + x.aRefused, 0),
      'stack CPU': `${Math.round(med(list.map(x => x.cpu)) * 100)} %`,
      'B p50 per round': list.map(x => x.b.p50.toFixed(1)).join(' / ')
    })
    const keys = Object.keys(list[0]?.steps ?? {})
    steps.push({ what, ...Object.fromEntries(keys.map(k => [k, med(list.map(x => x.steps[k] ?? NaN))])) })
  }

  console.log(`\nPorthole fair-share benchmark (${new Date().toISOString()}, ${quick ? 'quick' : 'full'} run, ${rounds} rounds of ${total} B jobs; A: ${floodClients} clients on 4 tiny KVM domains, B: 1 client on 1)\n`)
  console.log(table(rows))
  console.log('\nB\'s jobs step by step (p50 ms between the steps of their histories, median over rounds):\n')
  console.log(table(steps))
  console.log('\nLatency is from the API call to the job\'s final state (GET …/status answers with it); figures are medians over the rounds, each ratio to B alone measured in the same rounds. A\'s 202s are its calls with no answer within the default wait (10 s). Stack CPU: the API, receiver and agents processes and this one (100 % = one core; RabbitMQ, Redis and libvirtd not counted).')
}

try {
  await main()
} finally {
  for (const fn of cleanups.reverse()) await fn().catch(() => {})
}
