/**
 * What events and webhooks cost a job, and how late they are: power jobs (on, already on) from 10 clients on 10 VMs through the real
 * pipeline, with nobody listening (the peer, measured twice: first and last), then with 50 open `/v1/events`
 * streams and a webhook to an endpoint that answers at once, then with a second webhook to an endpoint that
 * never answers (each of its attempts held until WEBHOOK_TIMEOUT_SECONDS). For the listened rounds it also
 * prints how late the `succeeded` event reached a stream and the webhook endpoint, after the job recorded it.
 *
 *   npm run bench -- events [--quick]
 */
import { openSse, startStack, startWebhookReceiver, tinyDomain, type SseStream, type WebhookReceiver } from '@porthole/testkit'
import { UNCAPPED, closedLoop, jsonClient, percentile, table, type Summary } from './stats.js'

const quick = process.argv.includes('--quick')
const cleanups: Array<() => Promise<void>> = []
const t = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }
const STREAMS = 50
const CLIENTS = 10

/** p50 and p99 of how late each `succeeded` event of `jobIds` arrived (ms after its recorded time). */
function lateness (arrivals: Map<string, number>, ats: Map<string, number>, jobIds: string[]): { p50: number, p99: number, n: number } {
  const late = jobIds.flatMap(id => { const a = arrivals.get(id); const at = ats.get(id); return a === undefined || at === undefined ? [] : [a - at] }).sort((x, y) => x - y)
  return { p50: percentile(late, 50), p99: percentile(late, 99), n: late.length }
}

async function main (): Promise<void> {
  const stack = await startStack(t, {
    keepLogs: false,
    envFor: { receiver: UNCAPPED, api: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT_SECONDS: '60', WEBHOOK_CONCURRENCY: '64', WEBHOOK_CONCURRENCY_PER_URL: '16' } }
  })
  const api = jsonClient(stack.apiUrl, stack.adminToken)
  const tenant = (await stack.api('POST', '/v1/tenants', { name: 'bench-events' })).body.id as string
  const servers: string[] = []
  const doms = []
  for (let i = 0; i < 10; i++) {
    const d = await tinyDomain(t)
    doms.push(d)
    servers.push((await stack.api('POST', '/v1/servers', { name: d.name, tenantId: tenant, agent: 'kvm', connection: { uri: d.uri, domain: d.name } })).body.id as string)
  }
  await Promise.all(doms.map(async d => await d.settled()))
  const total = quick ? 200 : 600
  const round = async (): Promise<{ s: Summary, jobIds: string[] }> => {
    const jobIds: string[] = []
    const s = await closedLoop(CLIENTS, total, async (i) => {
      const r = await api('POST', `/v1/servers/${servers[i % servers.length]}/power?wait=60`, { action: 'on' })
      if (r.status !== 200 || r.body.state !== 'succeeded') throw new Error(`power ${r.status}: ${JSON.stringify(r.body)}`)
      jobIds.push(r.body.id as string)
    })
    return { s, jobIds }
  }
  await closedLoop(5, 100, async (i) => { await api('GET', `/v1/servers/${servers[i % servers.length]}/status`) }) // warm-up

  const rows: Array<Record<string, string | number>> = []
  const add = (what: string, r: Summary, peer: Summary | undefined, late?: { sse: { p50: number, p99: number }, hook: { p50: number, p99: number } }): void => {
    rows.push({
      what, jobs: r.n, 'jobs/s': r.perSecond, 'p50 ms': r.p50, 'p99 ms': r.p99, 'p50 / peer': peer === undefined ? '' : r.p50 / peer.p50,
      'event late p50/p99 ms': late === undefined ? '' : `${late.sse.p50.toFixed(1)} / ${late.sse.p99.toFixed(1)}`,
      'webhook late p50/p99 ms': late === undefined ? '' : `${late.hook.p50.toFixed(1)} / ${late.hook.p99.toFixed(1)}`
    })
  }
  const first = await round()
  add('nobody listening (peer)', first.s, undefined)

  // Listeners: streams record when each job's `succeeded` arrives; the webhook endpoint too.
  const arrivals = new Map<string, number>()
  const ats = new Map<string, number>()
  const streams: SseStream[] = []
  for (let i = 0; i < STREAMS; i++) streams.push(await openSse(`${stack.apiUrl}/v1/events?types=job`, stack.adminToken))
  cleanups.push(async () => { for (const s of streams) s.close() })
  const probe = streams[0] as SseStream
  let seen = 0
  const poll = setInterval(() => {
    // Only the first stream's arrivals are timed (all carry the same events); the others are read and kept.
    for (; seen < probe.events.length; seen++) {
      const e = probe.events[seen]
      if (e?.data?.state === 'succeeded' && !arrivals.has(e.data.jobId as string)) { arrivals.set(e.data.jobId, Date.now()); ats.set(e.data.jobId, Date.parse(e.data.at)) }
    }
  }, 2)
  cleanups.push(async () => { clearInterval(poll) })
  const hookArrivals = new Map<string, number>()
  const fast: WebhookReceiver = await startWebhookReceiver(t)
  const answer = fast.answer
  fast.answer = (w) => { if (w.body?.type === 'job.succeeded') hookArrivals.set(w.body.data.jobId as string, Date.now()); return answer(w) }
  const f = await stack.api('POST', '/v1/webhooks', { url: fast.url, tenantId: tenant, events: ['job.succeeded'] })
  fast.secret = f.body.secret

  const listened = await round()
  await waitUntil(() => listened.jobIds.every(id => arrivals.has(id) && hookArrivals.has(id)))
  add(`${STREAMS} event streams + a webhook answering at once`, listened.s, first.s, { sse: lateness(arrivals, ats, listened.jobIds), hook: lateness(hookArrivals, ats, listened.jobIds) })

  const stuck = await startWebhookReceiver(t)
  stuck.answer = () => 'hang'
  const h = await stack.api('POST', '/v1/webhooks', { url: stuck.url, tenantId: tenant })
  stuck.secret = h.body.secret
  const hanging = await round()
  await waitUntil(() => hanging.jobIds.every(id => arrivals.has(id) && hookArrivals.has(id)))
  add('… and a second webhook that never answers', hanging.s, first.s, { sse: lateness(arrivals, ats, hanging.jobIds), hook: lateness(hookArrivals, ats, hanging.jobIds) })
  const stuckHeld = stuck.hanging()
  const fastDeliveries = (await stack.api('GET', `/v1/webhooks/${f.body.id as string}/deliveries?limit=1000`)).body as Array<{ attempts: Array<{ status?: number, error?: string }> }>
  const retried = fastDeliveries.filter(d => d.attempts.length > 1)

  // Everyone stops listening: streams closed, webhooks deleted.
  for (const x of streams) x.close()
  for (const id of [f.body.id, h.body.id]) await stack.api('DELETE', `/v1/webhooks/${id as string}`)
  const last = await round()
  add('nobody listening, again (peer: the first)', last.s, first.s)
  console.log(`\nPorthole events benchmark (${new Date().toISOString()}, ${quick ? 'quick' : 'full'} run, ${CLIENTS} clients, power jobs (on, already on) on 10 tiny KVM domains)\n`)
  console.log(table(rows))
  console.log(`\nLatency is the API call to the job's final state. "late" is from the time the job recorded succeeded to its arrival on one of the ${STREAMS} streams (polled every 2 ms) and at the webhook endpoint. The endpoint that never answers held ${stuckHeld} requests open at the end (WEBHOOK_CONCURRENCY_PER_URL). Of the answering webhook's ${fastDeliveries.length} deliveries, ${retried.length} needed more than one attempt${retried.length === 0 ? '' : ` (first failures: ${[...new Set(retried.map(d => d.attempts[0]?.error ?? String(d.attempts[0]?.status)))].join('; ')})`}.`)
}

async function waitUntil (ok: () => boolean, timeoutMs = 180_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!ok()) {
    if (Date.now() > end) throw new Error('events did not all arrive')
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

try {
  await main()
} finally {
  for (const fn of cleanups.reverse()) await fn().catch(() => {})
}
