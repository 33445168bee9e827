// The dashboard's queues from RabbitMQ's management API (RABBITMQ_MANAGEMENT_URL), against a real broker with
// the management plugin: a RabbitMQ node of this test's own (its own ports, data directory and node name),
// since the shared test broker may run without the plugin. Needs rabbitmq-server, as CI's machine has.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { names } from '@porthole/shared/amqp'
import { freePort, waitFor } from '@porthole/testkit'
import { kvmServer, startTestApi, tenantWithKey } from './helpers.js'

interface Broker { amqpUrl: string, managementUrl: string }

/** Starts a RabbitMQ node with the management plugin; stopped and removed in t.after. */
async function brokerWithManagement (t: { after: (fn: () => Promise<void>) => void }): Promise<Broker> {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-rmq-'))
  const [amqpPort, httpPort, distPort] = [await freePort(), await freePort(), await freePort()]
  const node = `porthole-ops-${randomBytes(4).toString('hex')}@localhost`
  await writeFile(join(dir, 'enabled_plugins'), '[rabbitmq_management].\n')
  await writeFile(join(dir, 'rabbitmq.conf'), [
    `listeners.tcp.default = 127.0.0.1:${amqpPort}`, `management.tcp.ip = 127.0.0.1`, `management.tcp.port = ${httpPort}`,
    'loopback_users = none', 'collect_statistics_interval = 500', ''
  ].join('\n'))
  // The server itself, not Debian's /usr/sbin wrapper (which switches to the rabbitmq user, who cannot write here).
  const bin = existsSync('/usr/lib/rabbitmq/bin/rabbitmq-server') ? '/usr/lib/rabbitmq/bin/rabbitmq-server' : 'rabbitmq-server'
  const p = spawn(bin, [], {
    cwd: dir,
    stdio: 'ignore',
    env: {
      PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/usr/lib/rabbitmq/bin`, HOME: dir,
      RABBITMQ_NODENAME: node, RABBITMQ_NODE_PORT: String(amqpPort), RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'), RABBITMQ_LOG_BASE: join(dir, 'log'), RABBITMQ_PID_FILE: join(dir, 'pid'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'), RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq')
    }
  })
  const exited = new Promise<void>(resolve => p.once('exit', () => resolve()))
  p.once('error', () => {})
  t.after(async () => {
    p.kill('SIGTERM')
    const t2 = setTimeout(() => p.kill('SIGKILL'), 30_000)
    await exited
    clearTimeout(t2)
    await rm(dir, { recursive: true, force: true })
  })
  const managementUrl = `http://guest:guest@127.0.0.1:${httpPort}`
  const up = waitFor(async () => {
    const r = await fetch(`http://127.0.0.1:${httpPort}/api/overview`, { headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` } })
    return r.ok
  }, 90_000, 'the private RabbitMQ node with its management API', 250)
  // A node that cannot start says why in its log: fail with it rather than wait out the bound.
  const died = exited.then(async () => { throw new Error(`rabbitmq-server exited before it served: ${(await readFile(join(dir, 'log', `${node}.log`), 'utf8').catch(() => '')).slice(-2000)}`) })
  await Promise.race([up, died])
  up.catch(() => {})
  died.catch(() => {})
  return { amqpUrl: `amqp://guest:guest@127.0.0.1:${amqpPort}`, managementUrl }
}

test('with RABBITMQ_MANAGEMENT_URL the queues come from the management API: ready, unacked, consumers and rates', async (t) => {
  const broker = await brokerWithManagement(t)
  const api = await startTestApi(t, { env: { RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl } })
  const acme = await tenantWithKey(api)
  const serverId = await kvmServer(api, acme.tenantId)
  for (let i = 0; i < 3; i++) assert.equal((await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' })).status, 202)
  const login = await api.call('POST', '/ops/login', { key: api.adminToken }, { key: null, headers: { origin: 'http://localhost:80' } })
  const cookie = String(login.headers['set-cookie']).split(';')[0] as string
  const queue = names(api.ns).receiverQueue
  // The management API samples every collect_statistics_interval: wait until it has counted the three.
  const row = await waitFor(async () => {
    const r = await api.call('GET', '/ops/api/queues', undefined, { key: null, headers: { cookie } })
    assert.equal(r.status, 200, r.raw)
    assert.equal(r.body.source, 'management', r.raw)
    const q = (r.body.queues as Array<{ queue: string, messages: number, unacked?: number, consumers: number, publishRate?: number }>).find(x => x.queue === queue)
    return q !== undefined && q.messages === 3 && q.publishRate !== undefined ? q : undefined
  }, 30_000, 'three ready messages and a publish rate from the management API')
  assert.equal(row.unacked, 0)
  assert.equal(row.consumers, 0)
  assert.ok((row.publishRate ?? -1) >= 0)
  const all = (await api.call('GET', '/ops/api/queues', undefined, { key: null, headers: { cookie } })).body
  assert.equal(all.jobsLast15Minutes, 3)
  assert.ok(!JSON.stringify(all).includes('guest:guest'), 'the management credentials never reach the page')
})
