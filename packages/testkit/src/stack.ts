/**
 * Runs the real services, compiled, as child processes (as `npm start` does), on free loopback ports and a
 * namespace of their own, against the real RabbitMQ and Redis. Which services there are, their entry points,
 * their secrets and start-up environment come from the one list, `services/services.json`. The contract with
 * each service's entry point: configuration from the environment, JSON log lines on stdout, a line whose `msg` is
 * "ready" once it serves, and a clean exit on SIGTERM. Every log line is kept (see `logs()`), so tests can
 * check that no secret was ever written.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { dropNamespace, services, testSecretKey, uniqueNamespace, type Scope, type Services } from './index.js'
import { tcpBalancer, type TcpBalancer } from './tcp-proxy.js'

export type ServiceName = 'api' | 'receiver' | 'agents' | 'console-gateway'

/** The repository's root, found from this compiled file (packages/testkit/dist/src). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..')

/** One entry of services/services.json. */
export interface ServiceEntry { name: ServiceName, dir: string, main: string, settings: string, secrets: string[], env: Record<string, string> }
const KNOWN: readonly string[] = ['api', 'receiver', 'agents', 'console-gateway'] satisfies ServiceName[]

/** services/services.json, checked against the names this kit's API offers. */
export const SERVICES: readonly ServiceEntry[] = (() => {
  const list = (JSON.parse(readFileSync(join(REPO_ROOT, 'services', 'services.json'), 'utf8')) as { services: ServiceEntry[] }).services
  const unknown = list.map(s => s.name).filter(n => !KNOWN.includes(n))
  const missing = KNOWN.filter(n => !list.some(s => s.name === n))
  if (unknown.length > 0 || missing.length > 0) throw new Error(`services/services.json and the test kit's ServiceName disagree: unknown ${unknown.join(', ') || '-'}, missing ${missing.join(', ') || '-'}`)
  return list
})()
export const ALL_SERVICES: readonly ServiceName[] = SERVICES.map(s => s.name)
const entry = (name: ServiceName): ServiceEntry => SERVICES.find(s => s.name === name) as ServiceEntry
/** The file a service runs from (its bundle: services/services.json's `main`), as `npm start` and the image run it. */
export const mainOf = (name: ServiceName): string => join(REPO_ROOT, entry(name).dir, entry(name).main)

export interface StackOptions {
  services?: readonly ServiceName[]
  /** Extra environment for every service. */
  env?: Record<string, string>
  /** Extra environment per service. */
  envFor?: Partial<Record<ServiceName, Record<string, string>>>
  namespace?: string
  /** Extra arguments for every service's node process (e.g. `--cpu-prof` to profile a benchmark). */
  nodeArgs?: string[]
  /** Extra arguments per service's node process, after `nodeArgs` (e.g. a `--cpu-prof-dir` of its own). */
  nodeArgsFor?: Partial<Record<ServiceName, string[]>>
  /** Another entry point per service, relative to its directory (the startup bench times `dist/src/main.js`, unbundled). */
  mainFor?: Partial<Record<ServiceName, string>>
  /**
   * Keep every log line in memory (default). Benchmarks turn it off: holding and scanning a million lines in
   * the measuring process would be measured too. Lines are still watched for "ready".
   */
  keepLogs?: boolean
  /**
   * Replicas of each service (default 1). With more, the API and the gateway replicas listen on ports of
   * their own behind a load balancer each (tcpBalancer): `apiUrl` and `gatewayUrl` are the balancers',
   * `apiUrls` and `gatewayUrls` the replicas'.
   */
  replicas?: number
  /** The RabbitMQ and Redis the services use, instead of the environment's (a cluster, a Sentinel group). */
  backing?: Services
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read bodies of every shape
export interface ApiResponse<T = any> { status: number, headers: Headers, body: T }

/** The key of a replica in `Stack.procs`: the name alone for the first, `name#i` for the others. */
export function replicaKey (name: ServiceName, replica = 1): string {
  return replica === 1 ? name : `${name}#${replica}`
}

export class Stack {
  readonly procs = new Map<string, ChildProcess>()
  /** The pid each replica last ran as, by replicaKey (kept after it stopped: log lines name their pid). */
  readonly pids = new Map<string, number>()
  readonly logLines: string[] = []
  apiUrl = ''
  gatewayUrl = ''
  /** The load balancers in front of the API and gateway replicas (only with several replicas). */
  balancers: { api: TcpBalancer, gateway: TcpBalancer } | undefined
  /** Each replica's own address (one entry when the stack runs one replica of each service). */
  apiUrls: string[] = []
  gatewayUrls: string[] = []
  /** Where each service but the API (which serves /metrics itself) serves /metrics, from its ready line. */
  readonly metricsUrls: Partial<Record<ServiceName, string>> = {}
  /** The same for every replica, by replicaKey (the API's included: its own /metrics). */
  readonly replicaMetricsUrls: Record<string, string> = {}
  readonly adminToken = `adm_${randomBytes(24).toString('base64url')}`
  readonly secretKey = testSecretKey()
  /** The console gateway's own key (CONSOLE_KEY), distinct from the shared secret key. */
  readonly consoleKey = testSecretKey()
  /** SOL_BRIDGE_SECRET, shared by the agents and the gateway. */
  readonly solBridgeSecret = testSecretKey()
  /** The key console targets and URLs travel under (CONSOLE_TRANSIT_KEY): agents, gateway and API. */
  readonly transitKey = testSecretKey()

  constructor (readonly ns: string, readonly svc: Services, readonly opts: StackOptions) {}

  /** Calls the API with the bootstrap admin token unless `key` is given (`null` for none). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async api<T = any> (method: string, path: string, body?: unknown, o: { key?: string | null, headers?: Record<string, string> } = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { ...o.headers }
    const key = o.key === undefined ? this.adminToken : o.key
    if (key !== null) headers.authorization = `Bearer ${key}`
    if (body !== undefined) headers['content-type'] ??= 'application/json'
    const res = await fetch(this.apiUrl + path, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) })
    const text = await res.text()
    let parsed: unknown = text
    try { parsed = text === '' ? undefined : JSON.parse(text) } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, body: parsed as T }
  }

  /** Every log line every service wrote so far. */
  logs (): string { return this.logLines.join('\n') }

  /** Stops one service's replica (SIGKILL when `hard`) and waits for it to exit. */
  async stop (name: ServiceName, hard = false, replica = 1): Promise<void> {
    const key = replicaKey(name, replica)
    const p = this.procs.get(key)
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return // already gone: its 'exit' will not come again
    const exited = new Promise<void>(resolve => p.once('exit', () => resolve()))
    p.kill(hard ? 'SIGKILL' : 'SIGTERM')
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(t)
    this.procs.delete(key)
  }

  /** The value of each secret variable the stack generates; a service gets those its entry lists. */
  private secretValues (): Record<string, string> {
    return { PORTHOLE_SECRET_KEY: this.secretKey, CONSOLE_TRANSIT_KEY: this.transitKey, CONSOLE_KEY: this.consoleKey, SOL_BRIDGE_SECRET: this.solBridgeSecret, PORTHOLE_ADMIN_TOKEN: this.adminToken }
  }

  /** Starts (or restarts) one service's replica and waits for its "ready" line. */
  async start (name: ServiceName, extraEnv: Record<string, string> = {}, replica = 1): Promise<void> {
    const svc = entry(name)
    const secrets = Object.entries(this.secretValues()).filter(([k]) => svc.secrets.includes(k))
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      RABBITMQ_URL: this.svc.rabbitmqUrl,
      REDIS_URL: this.svc.redisUrl,
      PORTHOLE_NAMESPACE: this.ns,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'info',
      API_HOST: '127.0.0.1',
      API_PORT: new URL(this.apiUrls[replica - 1] ?? this.apiUrl).port,
      GATEWAY_HOST: '127.0.0.1',
      GATEWAY_PORT: new URL(this.gatewayUrls[replica - 1] ?? this.gatewayUrl).port,
      PUBLIC_GATEWAY_URL: this.gatewayUrl,
      // Metrics listeners on ports of their own choosing (stacks run side by side), named in the ready lines.
      METRICS_HOST: '127.0.0.1',
      RECEIVER_METRICS_PORT: '0',
      AGENTS_METRICS_PORT: '0',
      GATEWAY_METRICS_PORT: '0',
      // Each service gets only its own secrets, as in production (services/services.json, read by
      // scripts/start.mjs too). The gateway never gets PORTHOLE_SECRET_KEY: it cannot open server credentials.
      ...Object.fromEntries(secrets),
      // Its start-up environment (the agents' UV_THREADPOOL_SIZE: libuv sizes its pool at process start only).
      ...svc.env,
      // Whole-system tests and benchmarks poll and open consoles far faster than a customer should: the
      // limits themselves are tested in services/api/test/limits.int.test.ts (a stack may set them back).
      ...(name === 'api' ? { RATE_LIMIT_CUSTOMER: '1000000', RATE_LIMIT_OPERATOR: '1000000', RATE_LIMIT_ADMIN: '1000000', AUTH_FAILURE_LIMIT: '1000000', CONSOLE_SESSIONS_PER_SERVER: '1000', CONSOLE_SESSIONS_PER_TENANT: '100000', EVENT_STREAMS_PER_KEY: '1000' } : {}),
      // The agents' serial-over-LAN bridge: loopback, on a port of its own choosing (stacks run side by side).
      ...(name === 'agents' ? { SOL_BRIDGE_HOST: '127.0.0.1', SOL_BRIDGE_PORT: '0' } : {}),
      ...this.opts.env,
      ...this.opts.envFor?.[name],
      ...extraEnv
    }
    const main = this.opts.mainFor?.[name] === undefined ? mainOf(name) : join(REPO_ROOT, svc.dir, this.opts.mainFor[name])
    const p = spawn(process.execPath, ['--enable-source-maps', ...this.opts.nodeArgs ?? [], ...this.opts.nodeArgsFor?.[name] ?? [], main], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    this.procs.set(replicaKey(name, replica), p)
    if (p.pid !== undefined) this.pids.set(replicaKey(name, replica), p.pid)
    const ready = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${name} did not report ready within 30 s:\n${this.tail(name)}`)), 30_000)
      const onLine = (line: string): void => {
        this.logLines.push(line)
        if (line.includes('"msg":"ready"')) {
          const port = /"metricsPort":(\d+)/.exec(line)?.[1]
          if (port !== undefined && replica === 1) this.metricsUrls[name] = `http://127.0.0.1:${port}/metrics`
          if (port !== undefined) this.replicaMetricsUrls[replicaKey(name, replica)] = `http://127.0.0.1:${port}/metrics`
          clearTimeout(t)
          resolve()
          // From now on stdout is drained unread; stderr (crashes) is still kept.
          if (this.opts.keepLogs === false) stopStdout()
        }
      }
      const stopStdout = lines(p.stdout, onLine)
      lines(p.stderr, onLine)
      p.once('exit', (code) => { clearTimeout(t); reject(new Error(`${name} exited with ${code} before ready:\n${this.tail(name)}`)) })
    })
    await ready
  }

  private tail (name: string): string {
    return this.logLines.filter(l => l.includes(`"service":"${name}"`) || !l.startsWith('{')).slice(-20).join('\n')
  }

  /** Stops every replica of every service (SIGTERM), all at once. */
  async stopAll (): Promise<void> {
    await Promise.all([...this.procs.keys()].map(async k => {
      const [n, r] = k.split('#')
      await this.stop(n as ServiceName, false, Number(r ?? 1))
    }))
  }

  async close (): Promise<void> {
    await this.stopAll()
    await dropNamespace(this.ns, this.svc).catch(() => {})
  }
}

/** Calls `onLine` for each line of `stream`; the returned function stops that and drains the stream unread. */
function lines (stream: NodeJS.ReadableStream | null, onLine: (l: string) => void): () => void {
  if (stream === null) return () => {}
  let buf = ''
  let reading = true
  stream.setEncoding('utf8')
  const onData = (chunk: string): void => {
    if (!reading) return
    buf += chunk
    let i
    while (reading && (i = buf.indexOf('\n')) !== -1) { onLine(buf.slice(0, i)); buf = buf.slice(i + 1) }
  }
  stream.on('data', onData)
  return () => {
    reading = false
    buf = ''
    stream.off('data', onData)
    stream.resume()
  }
}

/** A free TCP port on loopback. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0))
    })
  })
}

/**
 * Starts the named services (all four by default) and registers their clean-up with `t.after`.
 * Usage: `const stack = await startStack(t)`.
 */
export async function startStack (t: Scope, o: StackOptions = {}): Promise<Stack> {
  const svc = o.backing ?? await services()
  const s = new Stack(o.namespace ?? uniqueNamespace(), svc, o)
  const replicas = o.replicas ?? 1
  for (let i = 0; i < replicas; i++) {
    s.apiUrls.push(`http://127.0.0.1:${await freePort()}`)
    s.gatewayUrls.push(`http://127.0.0.1:${await freePort()}`)
  }
  if (replicas === 1) {
    s.apiUrl = s.apiUrls[0] as string
    s.gatewayUrl = s.gatewayUrls[0] as string
  } else {
    const api = await tcpBalancer(s.apiUrls.map(u => Number(new URL(u).port)))
    const gateway = await tcpBalancer(s.gatewayUrls.map(u => Number(new URL(u).port)))
    t.after(async () => { await api.close(); await gateway.close() })
    s.apiUrl = api.url
    s.gatewayUrl = gateway.url
    s.balancers = { api, gateway }
  }
  t.after(async () => await s.close())
  for (const name of o.services ?? ALL_SERVICES) {
    for (let r = 1; r <= replicas; r++) await s.start(name, {}, r)
  }
  return s
}
