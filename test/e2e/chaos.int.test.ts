// Runs alone: it starts a three-node RabbitMQ cluster, Redis with Sentinels and two replicas of every service,
// and runs 1,000 jobs through them; it loads the whole machine.
// Past one machine, on one machine: a three-node RabbitMQ cluster and a Redis primary with a replica and three
// Sentinels, all of the test's own, and two replicas of every service (the API and the gateway each behind a
// load balancer). While CHAOS_JOBS power jobs (default 1,000) run against real libvirt VMs, the RabbitMQ node
// the API is connected to is killed, then one replica of each service, then Redis fails over to its replica.
// Then: every accepted job is terminal, none ran twice (the agents' action records, one per job, and
// libvirt's own lifecycle events per domain), the API answered 503 only while it had no broker, and a live
// console on the killed gateway was reconnected by its page to the other one.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createInterface } from 'node:readline'
import { launchChromium } from '@porthole/testkit/chromium'
import { JOB_STATES } from '@porthole/contracts'
import { rabbitCluster, replicaKey, sentinelGroup, startStack, TEST_LIBVIRT_URI, tinyDomain, waitFor, type Scope, type Stack } from '@porthole/testkit'

const JOBS = Number(process.env.CHAOS_JOBS ?? 1000)
const VMS = 4
const TERMINAL = new Set(['succeeded', 'failed', 'timed_out'])

/** A 503: when and from which replica; `jobId` is the job the API made and failed at once (not published). */
interface Refusal { replica: number, from: number, to: number, detail: string, jobId?: string }

/** Progress of a long test on stderr, as it goes (CI logs show where a slow machine spends its time). */
const began = Date.now()
function step (what: string): void { process.stderr.write(`chaos +${((Date.now() - began) / 1000).toFixed(1)} s: ${what}\n`) }

test(`${JOBS} jobs through a lost broker node, a lost replica of each service and a Redis failover: nothing lost, nothing twice`, { timeout: 1_200_000 }, async (t) => {
  // Clean-up in reverse order of creation: the services first, then the VMs, Redis and the cluster.
  const undo: Array<() => Promise<void>> = []
  const scope: Scope = { after: (fn) => { undo.push(fn) } }
  t.after(async () => { for (const fn of undo.reverse()) await fn().catch((err: unknown) => t.diagnostic(`clean-up: ${(err as Error).message}`)) })

  const cluster = await rabbitCluster(scope)
  step(`RabbitMQ cluster up: ${cluster.nodes.map(n => n.name).join(', ')}`)
  const redis = await sentinelGroup(scope)
  step('Redis primary, replica and three Sentinels up')
  const doms = await Promise.all(Array.from({ length: VMS }, async () => await tinyDomain(scope)))
  const events = lifecycleEvents(scope)
  step(`${VMS} VMs running`)
  const stack = await startStack(scope, {
    replicas: 2,
    backing: { rabbitmqUrl: cluster.url, redisUrl: 'redis://127.0.0.1:6379' },
    env: { REDIS_SENTINELS: redis.sentinels, REDIS_SENTINEL_NAME: redis.name, TEST_LOG_LEVEL: 'info' },
    envFor: { agents: { AGENT_TYPES: 'kvm' } }
  })
  step('two replicas of every service ready')
  const tenant = await stack.api('POST', '/v1/tenants', { name: 'chaos' })
  const servers = await Promise.all(doms.map(async d => (await stack.api('POST', '/v1/servers', { name: d.name, tenantId: tenant.body.id, agent: 'kvm', connection: { uri: d.uri, domain: d.name } })).body.id as string))

  // The broker node the API is on (every service is on the first node that answered, the first listed).
  const [apiNode] = await cluster.nodesOf('porthole-api')
  assert.ok(apiNode !== undefined, 'the API is connected to a node of the cluster')

  // A live console, held by one gateway replica.
  const browser = await launchChromium(scope)
  const c = await stack.api('POST', `/v1/servers/${servers[0] as string}/console`, { ttlSeconds: 3600 })
  assert.equal(c.status, 201, JSON.stringify(c.body))
  const page = await browser.newPage()
  scope.after(async () => { await page.close() })
  await page.goto(c.body.url)
  await page.waitForSelector('body[data-connected="true"]', { timeout: 30_000 })
  step('console connected; load starts')

  // The load: one chain of jobs per VM, suspend and resume in turn, each sent to an API replica directly (so
  // that a 503 is known to come from one replica) with an Idempotency-Key, so that a request cut off by a
  // dying replica is sent again without making a second job.
  const accepted = new Map<string, { server: string }>()
  const refusals: Refusal[] = []
  let done = 0
  // Each chain runs its share of JOBS, and on until the last blow has been dealt: the jobs run through all of it.
  let chaosOver = false
  const chain = async (server: string, n: number, k: number): Promise<void> => {
    for (let i = 0; i < n || !chaosOver; i++) {
      const key = randomUUID()
      const action = i % 2 === 0 ? 'suspend' : 'resume'
      for (let attempt = 0; ; attempt++) {
        const replica = (k + attempt) % 2
        const from = Date.now()
        const r = await call(stack.apiUrls[replica] as string, 'POST', `/v1/servers/${server}/power?wait=30`, stack.adminToken, { action }, { 'idempotency-key': key })
        if (r === undefined) { if (attempt % 50 === 49) step(`chain ${k}: no API replica answers (${attempt + 1} tries)`); continue } // that replica is gone: the other one
        if (r.status === 503) {
          refusals.push({ replica, from, to: Date.now(), detail: String(r.body?.detail), jobId: r.body?.jobId })
          // Retried once a replica says it is ready again (its broker back), not after a fixed pause.
          await waitFor(async () => (await Promise.all(stack.apiUrls.map(async u => (await call(u, 'GET', '/readyz', stack.adminToken))?.status === 200))).some(Boolean), 120_000, 'an API replica ready again')
          continue
        }
        assert.ok(r.status === 200 || r.status === 202, `power ${action}: ${r.status} ${JSON.stringify(r.body)}`)
        accepted.set(r.body.id, { server })
        if (!TERMINAL.has(r.body.state)) await terminal(stack, r.body.id)
        break
      }
      done++
      if (done % Math.max(1, Math.floor(JOBS / 10)) === 0) step(`${done} jobs done`)
    }
  }
  const perChain = Math.ceil(JOBS / VMS)
  const load = Promise.all(servers.map(async (s, k) => await chain(s, Math.min(perChain, JOBS - k * perChain), k)))
  load.catch(() => {})
  /** Waits until this share of the jobs is done; fails at once when a chain failed (not at the bound). */
  const reach = async (share: number, what: string): Promise<void> => {
    await Promise.race([waitFor(() => done >= JOBS * share, 600_000, what), load.then(() => {})])
  }

  await reach(0.1, 'a tenth of the jobs to finish before the broker node is lost')
  await cluster.kill(apiNode)
  step(`killed RabbitMQ node ${apiNode.name} after ${done} jobs`)

  // One replica of each service; of the gateways, the one holding the live console.
  await reach(0.35, 'a third of the jobs to finish before replicas are lost')
  const viewers = async (replica: number): Promise<number> => {
    const text = await (await fetch(stack.replicaMetricsUrls[replicaKey('console-gateway', replica)] as string)).text()
    return Number(/^porthole_console_viewers_open (\d+)/m.exec(text)?.[1] ?? 0)
  }
  // Which gateway holds the console: each one's own count of open viewers.
  const holding = (await viewers(1)) > 0 ? 0 : 1
  assert.equal(await viewers(holding + 1), 1, 'a gateway replica holds the console')
  for (const name of ['api', 'receiver', 'agents'] as const) await stack.stop(name, true, 1)
  await stack.stop('console-gateway', true, holding + 1)
  step(`killed api, receiver and agents replica 1 and gateway replica ${holding + 1} after ${done} jobs`)
  await page.waitForSelector('body[data-reconnects="1"][data-connected="true"]', { timeout: 120_000 })
  assert.equal(await viewers(2 - holding), 1, 'the other gateway holds the console now')
  step('the console page reconnected to the other gateway')

  await reach(0.6, 'more jobs to finish before Redis fails over')
  const primary = await redis.failover()
  chaosOver = true
  step(`Redis failed over to :${primary} after ${done} jobs`)

  await load
  assert.ok(done >= JOBS)
  step(`all ${done} jobs done`)
  // Every accepted job is terminal (asked of the API, which reads Redis after the failover).
  const ends = new Map<string, { state: string, changed?: boolean, server: string }>()
  for (const [id, { server }] of accepted) {
    const j = await terminal(stack, id)
    ends.set(id, { state: j.state, changed: j.result?.changed, server })
  }
  const byState: Record<string, number> = {}
  for (const e of ends.values()) byState[e.state] = (byState[e.state] ?? 0) + 1
  t.diagnostic(`accepted ${accepted.size}, ended ${JSON.stringify(byState)}, 503s ${refusals.length}`)
  assert.equal(ends.size, done, 'one job per step')
  // The retries with the same Idempotency-Key made no second job: every job the API holds for each VM is one
  // the load had accepted (a request cut off by a dying replica and sent again would otherwise leave a job no
  // step knows of), or one a 503 named: a job the API could not publish is kept, failed, and its key freed so
  // that the retry makes a new one.
  const refusedJobs = new Set(refusals.flatMap(r => r.jobId === undefined ? [] : [r.jobId]))
  for (const server of servers) {
    const held = new Map<string, string>()
    for (const state of JOB_STATES) {
      const r = await stack.api('GET', `/v1/jobs?serverId=${server}&kind=power&state=${state}&limit=500`)
      assert.equal(r.status, 200, JSON.stringify(r.body))
      assert.ok(r.body.length < 500, `fewer than 500 ${state} jobs of one VM, so the listing is whole`)
      for (const j of r.body as Array<{ id: string }>) held.set(j.id, state)
    }
    const mine = [...accepted].filter(([, a]) => a.server === server).map(([id]) => id)
    const refused = [...held.keys()].filter(id => refusedJobs.has(id))
    for (const id of refused) assert.equal(held.get(id), 'failed', `the job of a 503 (${id}) is failed, not run`)
    assert.deepEqual([...held.keys()].filter(id => !refusedJobs.has(id)).sort(), mine.sort(), `the jobs the API holds for ${server} are the accepted ones and those its 503s named, none more`)
  }
  t.diagnostic(`jobs a 503 named, kept as failed: ${refusedJobs.size}`)

  // None ran twice: the agents' records per job id: an outcome line ("job succeeded" / "job failed") for each
  // report, less the reports of a redelivered job that had run ("sending its recorded outcome again"), is
  // how often its action ran; and
  // libvirt saw no more state changes per domain than jobs changed it (plus, at most, jobs that did not
  // report: an agent killed mid-action), and no fewer than jobs say they changed it.
  const actions = new Map<string, number>()
  let resent = 0
  for (const line of stack.logLines) {
    if (!line.includes('"service":"agents"')) continue
    const id = /"jobId":"([^"]+)"/.exec(line)?.[1]
    if (id === undefined) continue
    if (/"msg":"job (succeeded|failed)"/.test(line)) actions.set(id, (actions.get(id) ?? 0) + 1)
    if (line.includes('"msg":"job redelivered after it ran; sending its recorded outcome again"')) { actions.set(id, (actions.get(id) ?? 0) - 1); resent++ }
  }
  t.diagnostic(`redelivered jobs answered from their recorded outcome, not run again: ${resent}`)
  const twice = [...actions].filter(([, n]) => n > 1)
  assert.deepEqual(twice, [], 'jobs whose action ran more than once')
  for (const [k, d] of doms.entries()) {
    const mine = [...ends.values()].filter(e => e.server === servers[k])
    const changed = mine.filter(e => e.state === 'succeeded' && e.changed === true).length
    const unreported = mine.filter(e => e.state !== 'succeeded').length
    const seen = events.count(d.name)
    assert.ok(seen >= changed && seen <= changed + unreported, `${d.name}: libvirt saw ${seen} state changes, jobs changed it ${changed} times (${unreported} did not report)`)
  }

  // 503 only while the replica that answered it had no broker: each refusal overlaps one of its outages,
  // from its own log ("broker connection lost" to "broker reconnected").
  for (const r of refusals) {
    assert.match(r.detail, /broker/i, `a 503 for another reason than the broker: ${r.detail}`)
    const outages = brokerOutages(stack, r.replica + 1)
    assert.ok(outages.some(o => o.from <= r.to && o.to >= r.from), `API replica ${r.replica + 1} answered 503 at ${new Date(r.from).toISOString()} while connected (outages: ${JSON.stringify(outages)})`)
  }
})

/** A fetch that says undefined when the replica is gone (refused, or cut off mid-request). */
async function call (base: string, method: string, path: string, token: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: any } | undefined> { // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers }, body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await res.text()
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) }
  } catch {
    return undefined
  }
}

/** Polls a job through the API's balancer until it is terminal. */
async function terminal (stack: Stack, id: string): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return await waitFor(async () => {
    const r = await call(stack.apiUrl, 'GET', `/v1/jobs/${id}`, stack.adminToken)
    return r?.status === 200 && TERMINAL.has(r.body.state) ? r.body : undefined
  }, 180_000, `job ${id} to end`, 50)
}

/** The windows in which one API replica had no broker, from its log lines (pino's `time`, its `pid`). */
function brokerOutages (stack: Stack, replica: number): Array<{ from: number, to: number }> {
  const pid = stack.pids.get(replicaKey('api', replica))
  const out: Array<{ from: number, to: number }> = []
  let from: number | undefined
  for (const line of stack.logLines) {
    if (!line.includes(`"pid":${String(pid)},`)) continue
    // pino's `time`: epoch milliseconds, or an ISO date where the logger is set to write one.
    const raw = /"time":"?([^",}]+)/.exec(line)?.[1] ?? ''
    const time = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw)
    if (line.includes('"msg":"broker connection lost; reconnecting"')) from ??= time
    if (line.includes('"msg":"broker reconnected"') && from !== undefined) { out.push({ from, to: time }); from = undefined }
  }
  if (from !== undefined) out.push({ from, to: Date.now() })
  return out
}

/** libvirt's lifecycle events, counted per domain for suspend and resume (`virsh event --loop`). */
function lifecycleEvents (scope: Scope): { count: (domain: string) => number } {
  const counts = new Map<string, number>()
  // Without --domain: every domain's events (virsh refuses --all beside --event).
  const p = spawn('virsh', ['-c', TEST_LIBVIRT_URI, 'event', '--loop', '--event', 'lifecycle'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise(resolve => p.once('exit', resolve))
  createInterface({ input: p.stdout }).on('line', (l) => {
    const m = /for domain '([^']+)': (Suspended|Resumed)/.exec(l)
    if (m !== null) counts.set(m[1] as string, (counts.get(m[1] as string) ?? 0) + 1)
  })
  scope.after(async () => { p.kill(); await exited })
  return {
    count: (d) => {
      assert.equal(p.exitCode, null, 'virsh event stopped listening')
      return counts.get(d) ?? 0
    }
  }
}
