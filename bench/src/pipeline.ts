/**
 * The job pipeline's speed: status and power jobs from 1, 10 and 50 concurrent clients, each timed from the
 * API call to the job's final state, through the real API, RabbitMQ, receiver, kvm agent, libvirt and Redis.
 * The floors, measured in the same run on the same broker: a plain two-hop RabbitMQ round trip (publish →
 * consume → publish → consume) with confirms in each lane (classic queues for status, quorum queues for
 * power), which is what a job's message path costs at the least.
 *
 *   npm run bench -- pipeline [--quick]
 */
import { randomUUID } from 'node:crypto'
import { AmqpClient, names, type Lane } from '@porthole/shared/amqp'
import { createLogger } from '@porthole/shared/logging'
import { dropNamespace, startStack, tinyDomain, type Stack } from '@porthole/testkit'
import { UNCAPPED, closedLoop, jsonClient, table, type Summary } from './stats.js'

const quick = process.argv.includes('--quick')
const cleanups: Array<() => Promise<void>> = []
const t = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }

async function floor (stack: Stack, concurrency: number, total: number, lane: Lane): Promise<Summary> {
  const log = createLogger({ name: 'bench', level: 'silent' })
  const ns = `${stack.ns}-floor${concurrency}${lane}`
  const c = new AmqpClient({ url: stack.svc.rabbitmqUrl, namespace: ns, log, name: 'bench-floor' })
  await c.start()
  // Each measurement gets its own queues and leaves none behind: a consumer of an earlier run still on the
  // same queues would take this run's messages.
  const drop = async (): Promise<void> => { await c.close(); await dropNamespace(ns, stack.svc) }
  t.after(drop)
  try {
    return await measureFloor(c, ns, concurrency, total, lane)
  } finally {
    cleanups.splice(cleanups.indexOf(drop), 1)
    await drop()
  }
}

async function measureFloor (c: AmqpClient, ns: string, concurrency: number, total: number, lane: Lane): Promise<Summary> {
  const n = names(ns)
  const kind = lane === 'durable' ? 'power' : 'status'
  const waiting = new Map<string, () => void>()
  // hop 1: jobs → a consumer that publishes onward (as the receiver does); hop 2: results → the caller;
  // both in the lane the job kind travels (quorum queues for power, classic ones for status).
  const interactive = lane === 'interactive'
  await c.consume(interactive ? n.receiverInteractiveQueue : n.receiverQueue, async (d) => { await c.publish(n.resultsExchange, n.resultsKeyOf(kind), d.body); return 'ack' }, { prefetch: 64 })
  await c.consume(interactive ? n.resultsInteractiveQueue : n.resultsQueue, async (d) => { const id = (d.body as { id: string }).id; waiting.get(id)?.(); waiting.delete(id); return 'ack' }, { prefetch: 64 })
  return await closedLoop(concurrency, total, async () => {
    const id = randomUUID()
    const done = new Promise<void>(resolve => waiting.set(id, resolve))
    // As the API publishes: an interactive job's message carries a TTL up to its deadline.
    await c.publish(n.jobsExchange, n.receiverKeyOf(kind), { id }, interactive ? { expiration: 10_000 } : {})
    await done
  })
}

async function main (): Promise<void> {
  // Services log at info, as in production; the bench process does not keep their lines (it would be measured).
  const stack = await startStack(t, { keepLogs: false, envFor: { receiver: UNCAPPED } })
  const api = jsonClient(stack.apiUrl, stack.adminToken)
  const tenant = (await stack.api('POST', '/v1/tenants', { name: 'bench' })).body.id as string
  const servers: string[] = []
  const doms = []
  for (let i = 0; i < 10; i++) {
    const d = await tinyDomain(t)
    doms.push(d)
    const r = await stack.api('POST', '/v1/servers', { name: d.name, tenantId: tenant, agent: 'kvm', connection: { uri: d.uri, domain: d.name } })
    servers.push(r.body.id as string)
  }
  // A freshly started tiny VM keeps a CPU busy for seconds while its BIOS looks for something to boot.
  await Promise.all(doms.map(async d => await d.settled()))
  const scale = quick ? 0.2 : 1
  const rows: Array<Record<string, string | number>> = []
  const add = (what: string, c: number, s: Summary, fl?: Summary): void => {
    rows.push({ what, clients: c, jobs: s.n, 'jobs/s': s.perSecond, 'p50 ms': s.p50, 'p99 ms': s.p99, 'p50 / floor p50': fl === undefined ? '' : s.p50 / fl.p50 })
  }
  // warm up every path (connections, JIT, libvirt)
  await closedLoop(5, 50, async (i) => { await api('GET', `/v1/servers/${servers[i % servers.length]}/status`) })
  for (const c of [1, 10, 50]) {
    const total = Math.round((c === 1 ? 300 : c === 10 ? 1500 : 3000) * scale)
    const fi = await floor(stack, c, total, 'interactive')
    add('floor: 2 hops, interactive lane (classic queues)', c, fi)
    const st = await closedLoop(c, total, async (i) => {
      const r = await api('GET', `/v1/servers/${servers[i % servers.length]}/status`)
      if (r.status !== 200) throw new Error(`status ${r.status}: ${JSON.stringify(r.body)}`)
    })
    add('status job', c, st, fi)
    const fd = await floor(stack, c, Math.round(total / 3), 'durable')
    add('floor: 2 hops, durable lane (quorum queues)', c, fd)
    const pw = await closedLoop(c, Math.round(total / 3), async (i) => {
      const r = await api('POST', `/v1/servers/${servers[i % servers.length]}/power?wait=60`, { action: 'on' })
      if (r.status !== 200 || r.body.state !== 'succeeded') throw new Error(`power ${r.status}: ${JSON.stringify(r.body)}`)
    })
    add('power job (on, already on; 10 servers, one job per server at a time)', c, pw, fd)
  }
  console.log(`\nPorthole pipeline benchmark (${new Date().toISOString()}, ${quick ? 'quick' : 'full'} run, 10 tiny KVM domains)\n`)
  console.log(table(rows))
  console.log('\nLatency is from the API call to the job\'s final state (the HTTP answer carries it). Each floor is two confirmed RabbitMQ hops in the lane its jobs travel, measured in this run; the ratio is to that floor.')
}

try {
  await main()
} finally {
  for (const fn of cleanups.reverse()) await fn().catch(() => {})
}
