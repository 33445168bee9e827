/**
 * Console URLs per second past one replica and one broker node, all in one run, each figure beside its peer:
 *  - 1 against 2 replicas of every service (the API and the gateway behind a load balancer each), on a
 *    three-node RabbitMQ cluster of the bench's own: the scaling ratio;
 *  - a one-node broker against the three-node cluster (one replica of each service): the price of
 *    replication (every queue a quorum queue of three on the cluster; on one node the interactive lane's
 *    queues are classic).
 * Redis is the environment's one Redis in every row, so that only the named difference changes. On a machine
 * with two cores the replicas share those cores: the ratio says what a second replica costs or gains there,
 * not what a second host would give.
 *
 *   npm run bench -- scale [--quick]
 */
import { rabbitCluster, services, startStack, tinyDomain, type Scope, type Stack } from '@porthole/testkit'
import { UNCAPPED, closedLoop, jsonClient, table, type Summary } from './stats.js'

const quick = process.argv.includes('--quick')
const CLIENTS = 20
const TOTAL = quick ? 200 : 1000
const VMS = 4

const undo: Array<() => Promise<void>> = []
const scope: Scope = { after: (fn) => { undo.push(fn) } }
async function cleanUp (): Promise<void> {
  for (const fn of undo.splice(0).reverse()) await fn().catch((err: unknown) => { console.error(`clean-up: ${(err as Error).message}`) })
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { void cleanUp().finally(() => process.exit(130)) })

/** Console URLs from CLIENTS clients through the stack's front address, each revoked after (not timed). */
async function consoleUrls (stack: Stack, servers: string[]): Promise<Summary> {
  const api = jsonClient(stack.apiUrl, stack.adminToken)
  const minted: string[] = []
  const one = async (i: number): Promise<void> => {
    const r = await api('POST', `/v1/servers/${servers[i % servers.length] as string}/console`, { ttlSeconds: 600 })
    if (r.status !== 201) throw new Error(`console URL: ${r.status} ${JSON.stringify(r.body)}`)
    minted.push(r.body.sessionId as string)
  }
  await closedLoop(CLIENTS, CLIENTS * 2, one) // warm-up: connections, JIT, the queues' first messages
  const s = await closedLoop(CLIENTS, TOTAL, one)
  await closedLoop(CLIENTS, minted.length, async (i) => { await api('DELETE', `/v1/console-sessions/${minted[i] as string}`) })
  return s
}

async function run (label: string, broker: string, replicas: number, doms: Array<{ uri: string, name: string }>): Promise<Summary & { label: string }> {
  const local: Array<() => Promise<void>> = []
  const s: Scope = { after: (fn) => { local.push(fn) } }
  try {
    const stack = await startStack(s, { replicas, backing: { rabbitmqUrl: broker, redisUrl: (await services()).redisUrl }, env: UNCAPPED, envFor: { agents: { AGENT_TYPES: 'kvm' } } })
    const tenant = await stack.api('POST', '/v1/tenants', { name: 'bench' })
    const servers = await Promise.all(doms.map(async d => (await stack.api('POST', '/v1/servers', { name: d.name, tenantId: tenant.body.id, agent: 'kvm', connection: { uri: d.uri, domain: d.name } })).body.id as string))
    return { label, ...await consoleUrls(stack, servers) }
  } finally {
    for (const fn of local.reverse()) await fn()
  }
}

async function main (): Promise<void> {
  const cluster = await rabbitCluster(scope, 3)
  const single = await rabbitCluster(scope, 1)
  const doms = await Promise.all(Array.from({ length: VMS }, async () => await tinyDomain(scope)))
  // Interleaved, so that a machine that gets busier during the run does not favour one side.
  const one = await run('3-node cluster, 1 replica each', cluster.url, 1, doms)
  const two = await run('3-node cluster, 2 replicas each', cluster.url, 2, doms)
  const lone = await run('1 broker node, 1 replica each', single.url, 1, doms)
  const rows = [one, two, lone]
  console.log(`console URLs (POST /v1/servers/{id}/console), ${CLIENTS} clients, ${TOTAL} URLs per row, ${VMS} tiny VMs, one Redis:\n`)
  console.log(table(rows.map(r => ({ setup: r.label, 'URLs/s': r.perSecond, 'p50 ms': r.p50, 'p99 ms': r.p99 }))))
  console.log(`\nscaling ratio (2 replicas / 1, on the cluster): ${(two.perSecond / one.perSecond).toFixed(2)}×`)
  console.log(`price of replication (3-node cluster / 1 node, 1 replica): ${(one.perSecond / lone.perSecond).toFixed(2)}× the throughput, p50 ${(one.p50 / lone.p50).toFixed(2)}×`)
}

main().then(cleanUp, async (err: unknown) => { await cleanUp(); console.error(err); process.exitCode = 1 })
