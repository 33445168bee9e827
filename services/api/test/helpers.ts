/** Test support: the API app on real RabbitMQ and Redis under a unique namespace, removed after the test. */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { AmqpClient, names } from '@porthole/shared/amqp'
import { createLogger } from '@porthole/shared/logging'
import { createRedis, JobStore, type Redis } from '@porthole/shared/store'
import { dropNamespace, services, testSecretKey, uniqueNamespace, waitFor, type Services } from '@porthole/testkit'
import type { Delivery } from '@porthole/shared/amqp'
import { buildApp, type ApiApp, type AppDeps } from '../src/app.js'
import { loadApiConfig, type ApiConfig } from '../src/config.js'
import { connect } from '../src/service.js'

export interface Reply<T = any> { status: number, headers: Record<string, unknown>, body: T, raw: string } // eslint-disable-line @typescript-eslint/no-explicit-any

export interface TestApi {
  app: ApiApp
  ns: string
  svc: Services
  config: ApiConfig
  deps: AppDeps
  /** A Redis connection of the test's own, for assertions. */
  redis: Redis
  jobs: JobStore
  adminToken: string
  secretKey: string
  /** CONSOLE_TRANSIT_KEY: what the gateway seals console URLs with for the API. */
  transitKey: string
  logLines: string[]
  /** Runs `fn` at teardown before the app closes and the namespace is dropped (t.after runs in order). */
  defer: (fn: () => Promise<void>) => void
  /** Calls the API with the bootstrap admin token unless `key` is given (`null` for none). */
  call: <T = any>(method: string, url: string, body?: unknown, o?: { key?: string | null, headers?: Record<string, string>, payload?: string }) => Promise<Reply<T>> // eslint-disable-line @typescript-eslint/no-explicit-any
}

interface T { after: (fn: () => Promise<void>) => void }

export async function startTestApi (t: T, o: { env?: Record<string, string>, waitForBroker?: boolean } = {}): Promise<TestApi> {
  const svc = await services()
  const ns = uniqueNamespace('api')
  const adminToken = `adm_${randomBytes(24).toString('base64url')}`
  const secretKey = testSecretKey()
  const transitKey = testSecretKey()
  const config = loadApiConfig({
    RABBITMQ_URL: svc.rabbitmqUrl,
    REDIS_URL: svc.redisUrl,
    PORTHOLE_NAMESPACE: ns,
    PORTHOLE_SECRET_KEY: secretKey,
    CONSOLE_TRANSIT_KEY: transitKey,
    PORTHOLE_ADMIN_TOKEN: adminToken,
    LOG_LEVEL: 'info',
    ...o.env
  })
  const logLines: string[] = []
  const log = createLogger({ name: 'api', level: 'info', destination: { write: (s: string) => { logLines.push(s) } } })
  const deps = connect(config, log, { backoff: { initialMs: 50, maxMs: 250 } })
  const redis = createRedis(svc.redisUrl, log, 'api-test')
  const holder: { app?: ApiApp } = {}
  const deferred: Array<() => Promise<void>> = []
  t.after(async () => {
    for (const fn of deferred.reverse()) await fn()
    await holder.app?.close()
    await deps.close()
    redis.disconnect()
    await dropNamespace(ns, svc).catch(() => {})
  })
  const app = await buildApp(deps)
  holder.app = app
  await app.ready()
  if (o.waitForBroker !== false) await waitFor(() => deps.amqp.connected, 10_000, 'broker connection')
  return { app, ns, svc, config, deps, redis, jobs: new JobStore(redis, ns), adminToken, secretKey, transitKey, logLines, call: caller(app, adminToken), defer: fn => { deferred.push(fn) } }
}

/** `TestApi['call']` for `app`. */
function caller (app: ApiApp, adminToken: string): TestApi['call'] {
  return async (method: string, url: string, body?: unknown, c: { key?: string | null, headers?: Record<string, string>, payload?: string } = {}): Promise<Reply> => {
    const headers: Record<string, string> = { ...c.headers }
    const key = c.key === undefined ? adminToken : c.key
    if (key !== null) headers.authorization = `Bearer ${key}`
    let payload = c.payload
    if (body !== undefined) { payload = JSON.stringify(body); headers['content-type'] ??= 'application/json' }
    const res = await app.inject({ method: method as 'GET', url, headers, ...(payload === undefined ? {} : { payload }) })
    let parsed: unknown = res.body
    try { parsed = res.body === '' ? undefined : JSON.parse(res.body) } catch { /* not JSON */ }
    return { status: res.statusCode, headers: res.headers, body: parsed, raw: res.body }
  }
}

/** A 429 as the limits promise it: problem+json naming the limit, with a Retry-After in range. */
export function assertLimited (r: Reply, limit: string, maxRetryAfter: number): void {
  assert.equal(r.status, 429, r.raw)
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/)
  assert.equal(r.body.limit, limit)
  assert.equal(r.body.code, 'busy')
  assert.match(r.body.detail, /limit \d+/)
  const after = Number(r.headers['retry-after'])
  assert.ok(Number.isInteger(after) && after >= 1 && after <= maxRetryAfter, `Retry-After ${String(r.headers['retry-after'])}`)
}

/** A second API replica on the test's namespace (same Redis and broker, settings as `api`'s), closed at teardown. */
export async function secondReplica (api: TestApi): Promise<{ app: ApiApp, deps: AppDeps, call: TestApi['call'] }> {
  const log = createLogger({ name: 'api-2', level: 'warn' })
  const deps = connect(api.config, log, { backoff: { initialMs: 50, maxMs: 250 } })
  const holder: { app?: ApiApp } = {}
  api.defer(async () => { await holder.app?.close(); await deps.close() })
  const app = holder.app = await buildApp(deps)
  await app.ready()
  // As startTestApi does: an AmqpClient closed while it is still connecting can leave its socket open.
  await waitFor(() => deps.amqp.connected, 10_000, 'broker connection')
  return { app, deps, call: caller(app, api.adminToken) }
}

/** A tenant, a customer key for it, and (optionally) a KVM server of it. */
export async function tenantWithKey (api: TestApi, name = 'acme'): Promise<{ tenantId: string, key: string, keyId: string }> {
  const t = await api.call('POST', '/v1/tenants', { name })
  if (t.status !== 201) throw new Error(`tenant: ${t.status} ${t.raw}`)
  const k = await api.call('POST', '/v1/api-keys', { name: `${name}-key`, role: 'customer', tenantId: t.body.id })
  if (k.status !== 201) throw new Error(`key: ${k.status} ${k.raw}`)
  return { tenantId: t.body.id, key: k.body.key, keyId: k.body.id }
}

export async function kvmServer (api: TestApi, tenantId: string, name = 'vm1'): Promise<string> {
  const r = await api.call('POST', '/v1/servers', { name, tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: name } })
  if (r.status !== 201) throw new Error(`server: ${r.status} ${r.raw}`)
  return r.body.id as string
}

/** Two tenants, `a` and `b`, each with a customer key and one kvm server (`sa`, `sb`): for tests of who sees what. */
export async function twoTenants (api: TestApi): Promise<{ a: Awaited<ReturnType<typeof tenantWithKey>>, b: Awaited<ReturnType<typeof tenantWithKey>>, sa: string, sb: string }> {
  const a = await tenantWithKey(api, 'a')
  const b = await tenantWithKey(api, 'b')
  return { a, b, sa: await kvmServer(api, a.tenantId, 'va'), sb: await kvmServer(api, b.tenantId, 'vb') }
}

/**
 * Consumes `<ns>.jobs.receiver` as the receiver would, handing each message to `onJob`. Returns the
 * messages seen; the consumer closes in t.after.
 */
export async function consumeJobs (api: TestApi, onJob: (body: unknown, d: Delivery) => Promise<void> | void = () => {}): Promise<unknown[]> {
  const seen: unknown[] = []
  const log = createLogger({ name: 'test-receiver', level: 'warn' })
  const client = new AmqpClient({ url: api.svc.rabbitmqUrl, namespace: api.ns, log, name: 'test-receiver' })
  api.defer(async () => { await client.close(1000) })
  await client.start(10_000)
  // Both lanes: power jobs arrive on the quorum queue, status and console jobs on the classic one.
  for (const q of [names(api.ns).receiverQueue, names(api.ns).receiverInteractiveQueue]) {
    await client.consume(q, async (d) => { seen.push(d.body); await onJob(d.body, d); return 'ack' }, { prefetch: 10 })
  }
  return seen
}

/** Every Redis key and value (strings, hashes, streams, zsets) under the namespace, as one string. */
export async function dumpNamespace (redis: Redis, ns: string): Promise<string> {
  const out: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${ns}:*`, 'COUNT', 1000)
    cursor = next
    for (const k of batch) {
      out.push(k)
      const type = await redis.type(k)
      if (type === 'string') out.push(await redis.get(k) ?? '')
      else if (type === 'hash') out.push(JSON.stringify(await redis.hgetall(k)))
      else if (type === 'zset') out.push((await redis.zrange(k, 0, -1)).join(','))
      else if (type === 'stream') out.push(JSON.stringify(await redis.xrange(k, '-', '+')))
      else if (type === 'set') out.push((await redis.smembers(k)).join(','))
      else if (type === 'list') out.push((await redis.lrange(k, 0, -1)).join(','))
    }
  } while (cursor !== '0')
  return out.join('\n')
}

/** Listens on a free loopback port (for clients that need a real socket: event streams); the port. */
export async function listenPort (app: ApiApp): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return (app.server.address() as AddressInfo).port
}

/** As listenPort, for the test's app; its base URL. */
export async function listen (api: TestApi): Promise<string> {
  return `http://127.0.0.1:${await listenPort(api.app)}`
}

/** The Origin of injected requests (inject's Host is localhost:80). */
export const OPS_ORIGIN = 'http://localhost:80'

/** A new API key of `role` (customers: of `tenantId`). */
export async function apiKey (api: TestApi, role: 'operator' | 'admin' | 'customer', tenantId?: string): Promise<{ id: string, key: string }> {
  const r = await api.call('POST', '/v1/api-keys', { name: `ops-${role}`, role, ...(tenantId === undefined ? {} : { tenantId }) })
  if (r.status !== 201) throw new Error(`key: ${r.status} ${r.raw}`)
  return r.body
}

export interface OpsLogin { cookie: string, setCookie: string, csrf: string }

/** Logs in to the dashboard with `key`; the session's cookie and CSRF token. */
export async function opsLogin (api: TestApi, key: string, headers: Record<string, string> = { origin: OPS_ORIGIN }): Promise<OpsLogin> {
  const r = await api.call('POST', '/ops/login', { key }, { key: null, headers })
  if (r.status !== 200) throw new Error(`login: ${r.status} ${r.raw}`)
  const setCookie = String(r.headers['set-cookie'])
  return { cookie: setCookie.split(';')[0] as string, setCookie, csrf: r.body.csrf }
}

/** A dashboard request with the session's cookie and, for changes, its CSRF token and this origin. */
export async function opsCall (api: TestApi, s: OpsLogin, method: string, url: string, body?: unknown, extra: Record<string, string> = {}): Promise<Reply> {
  const headers: Record<string, string> = { cookie: s.cookie, ...(method === 'GET' || method === 'HEAD' ? {} : { 'x-csrf-token': s.csrf, origin: OPS_ORIGIN }), ...extra }
  return await api.call(method, url, body, { key: null, headers })
}

/**
 * Every route of the app, as fastify's own router lists them (its printRoutes tree, flattened): one row per
 * method and path, HEAD routes included, path parameters as `:name`.
 */
export function routesOf (app: ApiApp): Array<{ method: string, url: string }> {
  const out: Array<{ method: string, url: string }> = []
  const prefixes: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^((?:[│ ] {3})*)[├└]── (\S+)(?: \(([^)]+)\))?$/.exec(line)
    if (m === null) continue
    const depth = (m[1] ?? '').length / 4
    const path = (prefixes[depth - 1] ?? '') + (m[2] ?? '')
    prefixes[depth] = path
    prefixes.length = depth + 1
    for (const method of (m[3] ?? '').split(',').map(x => x.trim()).filter(x => x !== '')) out.push({ method, url: path })
  }
  return out
}
