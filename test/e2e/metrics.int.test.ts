// Metrics on every service: each serves /metrics (the API on its own port, the others on their metrics
// listeners), real work shows in them, and every metric the Grafana dashboard in deploy/ queries exists on a
// running service (and the Prometheus config scrapes every service).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { WebSocket } from 'ws'
import { REPO_ROOT, tinyDomain, waitFor } from '@porthole/testkit'
import { fileStack, kvmServer, power, tenant } from './fixtures.js'

const stack = await fileStack()
const acme = await tenant(stack, 'metrics-acme')

async function scrape (url: string): Promise<string> {
  const r = await fetch(url)
  assert.equal(r.status, 200, url)
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain/)
  return await r.text()
}

/** The value of one series (`name{labels}` as written), or undefined. */
function value (text: string, series: RegExp): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^(\S+) (\S+)$/.exec(line)
    if (m?.[1] !== undefined && series.test(m[1])) return Number(m[2])
  }
  return undefined
}

test('every service serves metrics; jobs, agent actions and a console show in them; the dashboard queries only metrics that exist', async (t) => {
  const urls = { api: `${stack.apiUrl}/metrics`, ...stack.metricsUrls }
  assert.deepEqual(Object.keys(urls).sort(), ['agents', 'api', 'console-gateway', 'receiver'])
  for (const name of ['agents', 'console-gateway', 'receiver'] as const) {
    const base = (urls[name] as string).replace(/\/metrics$/, '')
    assert.equal((await fetch(`${base}/healthz`)).status, 200)
    assert.equal((await fetch(`${base}/readyz`)).status, 200)
    assert.equal((await fetch(`${base}/nothing`)).status, 404)
  }

  const dom = await tinyDomain(t)
  const serverId = await kvmServer(stack, acme.tenantId, dom)
  assert.equal((await power(stack, serverId, 'off', acme.customerKey)).state, 'succeeded')
  assert.equal((await power(stack, serverId, 'on', acme.customerKey)).state, 'succeeded')
  const con = await stack.api('POST', `/v1/servers/${serverId}/console`, {}, { key: acme.customerKey })
  assert.equal(con.status, 201, JSON.stringify(con.body))
  const u = new URL(con.body.url as string)
  const ws = new WebSocket(`ws://${u.host}${u.pathname}/ws`, ['binary', `porthole.token.${u.hash.slice(1)}`], { headers: { origin: u.origin } })
  t.after(() => { ws.close() })
  await new Promise<void>((resolve, reject) => { ws.once('message', () => resolve()); ws.once('error', reject) })

  const receiver = await waitFor(async () => {
    const text = await scrape(urls.receiver as string)
    return (value(text, /^porthole_job_duration_seconds_count\{kind="console",agent="kvm",outcome="succeeded"\}$/) ?? 0) >= 1 ? text : undefined
  }, 10_000, 'the console job in the receiver\'s job durations')
  assert.equal(value(receiver, /^porthole_job_duration_seconds_count\{kind="power",agent="kvm",outcome="succeeded"\}$/), 2)
  assert.ok((value(receiver, /^porthole_jobs_dispatched_total\{kind="power",agent="kvm"\}$/) ?? 0) >= 2)
  assert.notEqual(value(receiver, /^porthole_jobs_in_flight$/), undefined)
  assert.notEqual(value(receiver, /^porthole_queue_messages\{queue="[^"]+\.jobs\.receiver"\}$/), undefined)
  assert.ok((value(receiver, /^porthole_amqp_publish_confirms_total\{client="receiver",outcome="ok"\}$/) ?? 0) >= 3)

  const agents = await scrape(urls.agents as string)
  for (const action of ['off', 'on', 'console']) {
    assert.equal(value(agents, new RegExp(`^porthole_agent_action_duration_seconds_count\\{agent="kvm",action="${action}",outcome="ok"\\}$`)), 1, action)
  }
  assert.equal(value(agents, /^porthole_agent_actions_in_flight\{agent="kvm"\}$/), 0)

  const gateway = await waitFor(async () => {
    const text = await scrape(urls['console-gateway'] as string)
    return value(text, /^porthole_console_viewers_open$/) === 1 ? text : undefined
  }, 10_000, 'the viewer on the gateway')
  assert.ok((value(gateway, /^porthole_console_relay_bytes_total\{direction="to_browser"\}$/) ?? 0) > 0)

  // Every metric the dashboard queries exists on a running service (a histogram by its _bucket/_count/_sum).
  const texts = await Promise.all(Object.values(urls).map(async url => await scrape(url as string)))
  const exposed = new Map<string, string>()
  for (const text of texts) for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) exposed.set(m[1] as string, m[2] as string)
  const dashboard = JSON.parse(await readFile(join(REPO_ROOT, 'deploy', 'grafana', 'porthole.json'), 'utf8')) as { panels: Array<{ targets?: Array<{ expr: string }> }> }
  const exprs = dashboard.panels.flatMap(p => p.targets ?? []).map(x => x.expr)
  assert.ok(exprs.length >= 20, `${exprs.length} queries`)
  const queried = new Set(exprs.flatMap(e => [...e.matchAll(/\bporthole_[a-z0-9_]+/g)].map(m => m[0])))
  const missing = [...queried].filter(name => {
    if (exposed.has(name)) return false
    const base = name.replace(/_(bucket|count|sum)$/, '')
    return exposed.get(base) !== 'histogram'
  })
  assert.deepEqual(missing, [], 'metrics the dashboard queries that no service exposes')
  // And the dashboard covers what issue #11 asks to be watched.
  for (const name of ['porthole_job_duration_seconds', 'porthole_jobs_in_flight', 'porthole_queue_messages', 'porthole_amqp_reconnects_total', 'porthole_amqp_publish_confirms_total',
    'porthole_redis_errors_total', 'porthole_console_viewers_open', 'porthole_console_first_frame_seconds', 'porthole_console_relay_bytes_total', 'porthole_agent_action_duration_seconds']) {
    assert.ok([...queried].some(q => q === name || q.startsWith(`${name}_`)), `the dashboard shows ${name}`)
  }
  // Prometheus scrapes every service at its default port.
  const scrapeConfig = await readFile(join(REPO_ROOT, 'deploy', 'prometheus', 'prometheus.yml'), 'utf8')
  for (const target of ['api:8080', 'receiver:9101', 'agents:9102', 'console-gateway:9103']) assert.ok(scrapeConfig.includes(`'${target}'`), target)
})
