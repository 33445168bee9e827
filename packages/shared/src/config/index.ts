/**
 * Configuration from the environment: each service declares its settings once (name, parser, default,
 * description), parses them at start-up and gets a frozen object. A bad value stops the process with a
 * message that names the variable. The same declarations feed the README's settings table.
 */
import { libvirtUriProblem, type KvmPolicy } from '@porthole/contracts'
import { brokerNodes } from '../amqp/nodes.js'

export class ConfigError extends Error {
  constructor (readonly variable: string, message: string) {
    super(`${variable}: ${message}`)
    this.name = 'ConfigError'
  }
}

export interface Setting<T> {
  /** Parses the raw value; throws an Error whose message says what was expected. */
  parse: (raw: string) => T
  default?: T | undefined
  /** True when the setting has no default and must be set. */
  required?: boolean
  /** True when the value is a secret: never logged or printed. */
  secret?: boolean
  doc: string
}

type Spec = Record<string, Setting<unknown>>
export type ConfigOf<S extends Spec> = { readonly [K in keyof S]: S[K] extends Setting<infer T> ? T : never }

/** Parses `env` against `spec`; the first bad or missing variable throws a ConfigError naming it. */
export function loadConfig<S extends Spec> (spec: S, env: NodeJS.ProcessEnv = process.env): ConfigOf<S> {
  const out: Record<string, unknown> = {}
  for (const [name, s] of Object.entries(spec)) {
    const raw = env[name]
    if (raw === undefined || raw === '') {
      if (s.required === true) throw new ConfigError(name, `must be set (${s.doc})`)
      out[name] = s.default
      continue
    }
    try {
      out[name] = s.parse(raw)
    } catch (err) {
      throw new ConfigError(name, (err as Error).message)
    }
  }
  return Object.freeze(out) as ConfigOf<S>
}

export const str = (doc: string, def?: string): Setting<string> => ({ parse: v => v, default: def, doc })
export const secret = (doc: string, def?: string): Setting<string> => ({ parse: v => v, default: def, doc, secret: true })
export const required = <T>(s: Setting<T>): Setting<T> => ({ ...s, required: true })
export const optional = (doc: string): Setting<string | undefined> => ({ parse: v => v, default: undefined, doc })

export function int (doc: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): Setting<number> {
  return {
    doc,
    default: def,
    parse (v) {
      if (!/^-?\d+$/.test(v.trim())) throw new Error(`expected a whole number, got ${JSON.stringify(v)}`)
      const n = Number(v)
      if (n < min || n > max) throw new Error(`expected a number from ${min} to ${max}, got ${n}`)
      return n
    }
  }
}

export function bool (doc: string, def: boolean): Setting<boolean> {
  return {
    doc,
    default: def,
    parse (v) {
      const s = v.trim().toLowerCase()
      if (['1', 'true', 'yes', 'on'].includes(s)) return true
      if (['0', 'false', 'no', 'off'].includes(s)) return false
      throw new Error(`expected true or false, got ${JSON.stringify(v)}`)
    }
  }
}

export function url (doc: string, def: string | undefined, protocols: string[]): Setting<string> {
  return {
    doc,
    default: def,
    parse (v) {
      let u: URL
      try { u = new URL(v) } catch { throw new Error('expected a URL') }
      if (!protocols.includes(u.protocol.replace(/:$/, ''))) throw new Error(`expected a ${protocols.join(' or ')} URL`)
      return v
    }
  }
}

export function oneOf<T extends string> (doc: string, def: T, values: readonly T[]): Setting<T> {
  return {
    doc,
    default: def,
    parse (v) {
      if (!(values as readonly string[]).includes(v)) throw new Error(`expected one of ${values.join(', ')}, got ${JSON.stringify(v)}`)
      return v as T
    }
  }
}

export function list (doc: string, def: string[]): Setting<string[]> {
  return { doc, default: def, parse: v => v.split(',').map(s => s.trim()).filter(s => s !== '') }
}

/** Settings every service shares. */
/** Where a service without an HTTP server of its own serves `/metrics`, `/healthz` and `/readyz`. */
export const metricsHostSettings = {
  METRICS_HOST: str('address the metrics listener (`/metrics`, `/healthz`, `/readyz`) of the receiver, the agents and the console gateway listens on', '0.0.0.0')
}

/** `host:port` entries, comma-separated (Redis Sentinels). */
export function hostPorts (doc: string): Setting<Array<{ host: string, port: number }>> {
  return {
    doc,
    default: [],
    parse (v) {
      return v.split(',').map(s => s.trim()).filter(s => s !== '').map(e => {
        const m = /^(\[[0-9a-f:]+\]|[^:\s]+):(\d{1,5})$/i.exec(e)
        const port = Number(m?.[2])
        if (m === null || port < 1 || port > 65535) throw new Error(`expected host:port entries, got ${JSON.stringify(e)}`)
        return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port }
      })
    }
  }
}

export const commonSettings = {
  RABBITMQ_URL: {
    ...url('RabbitMQ connection URL; for a cluster its nodes comma-separated, the first a full URL and the others `host:port` (they take its user, password and virtual host): the services connect to the first reachable node and move to another when theirs goes away, and every queue is then a quorum queue of three', 'amqp://guest:guest@127.0.0.1:5672', ['amqp', 'amqps']),
    parse: (v: string) => {
      let nodes: string[]
      try { nodes = brokerNodes(v) } catch { throw new Error('expected an amqp or amqps URL, or a comma-separated list of the cluster\'s nodes') }
      if (!nodes.every(n => /^amqps?:$/.test(new URL(n).protocol))) throw new Error('expected amqp or amqps URLs')
      return v
    }
  } satisfies Setting<string>,
  REDIS_URL: url('Redis connection URL; with REDIS_SENTINELS only its user, password, database and `rediss:` are used (the Sentinels name the primary)', 'redis://127.0.0.1:6379', ['redis', 'rediss']),
  REDIS_SENTINELS: hostPorts('Redis Sentinels as `host:port`, comma-separated; when set, the services ask them for the primary of REDIS_SENTINEL_NAME and follow its failovers (empty: REDIS_URL is the one Redis)'),
  REDIS_SENTINEL_NAME: str('the name the Sentinels monitor the primary under (`sentinel monitor NAME …`)', 'porthole'),
  PORTHOLE_NAMESPACE: {
    ...str('prefix of every queue, exchange and Redis key; lets several deployments (or test runs) share a broker', 'porthole'),
    parse: (v: string) => { if (!/^[a-z0-9][a-z0-9_-]{0,40}$/.test(v)) throw new Error('expected lower-case letters, digits, _ and -'); return v }
  } satisfies Setting<string>,
  LOG_LEVEL: oneOf('pino log level', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const)
}

/** The key that seals server credentials at rest (AES-256-GCM): the API and the agents only. */
export const secretKeySettings = {
  PORTHOLE_SECRET_KEY: required(secret('32 random bytes, base64: seals server credentials at rest; the API and the agents only, never the console gateway (`openssl rand -base64 32`)')),
  PORTHOLE_SECRET_KEY_ID: str('id of PORTHOLE_SECRET_KEY, stored with every sealed secret so keys can be rotated', 'k1'),
  PORTHOLE_OLD_SECRET_KEYS: secret('earlier keys still accepted for opening, as `id:base64,id:base64`', '')
}

/** The key the console gateway proves itself with to the agents' serial-over-LAN bridge (HMAC-SHA256). */
export const solBridgeSettings = {
  SOL_BRIDGE_SECRET: {
    ...secret('32 random bytes or more, base64, shared by the agents and the console gateway only: the gateway signs every connection to the agents\' serial-over-LAN bridge with it; required where AGENT_TYPES has ipmi, and by the gateway for serial consoles (`openssl rand -base64 32`)'),
    parse: (v: string) => {
      const n = Buffer.from(v, 'base64').length
      if (n < 32) throw new Error(`expected at least 32 bytes in base64, got ${n} bytes`)
      return v
    }
  } satisfies Setting<string>
}

/**
 * Deploy-time limits on the libvirt URIs of kvm servers (`KvmPolicy`). The API checks records against them and
 * the agents check again before any libvirt call: give both the same values.
 */
export const kvmPolicySettings = {
  KVM_SSH_KEY_DIR: {
    doc: 'directory of the SSH private keys kvm connections may use: a connection names a file in it (`keyFile`, or `?keyfile=<dir>/<name>` in a URI), never a path of its own; unset, none may',
    default: undefined,
    parse (v: string): string {
      const dir = v.trim().replace(/(.)\/+$/, '$1')
      if (!/^\/[A-Za-z0-9._/-]+$/.test(dir) || dir.split('/').some(p => p === '..' || p === '.')) throw new Error('expected an absolute directory path (not /) of letters, digits, ".", "_", "-" and "/", without "." or ".." parts')
      return dir
    }
  } satisfies Setting<string | undefined>,
  KVM_ALLOWED_URIS: {
    doc: 'when set, the only libvirt URIs kvm connections may use (comma separated, compared exactly; a structured connection is compared by the URI built from it)',
    default: undefined,
    parse (v: string): readonly string[] {
      const uris = v.split(',').map(s => s.trim()).filter(s => s !== '')
      if (uris.length === 0) throw new Error('expected at least one libvirt URI')
      return Object.freeze(uris)
    }
  } satisfies Setting<readonly string[] | undefined>
}

/** The KvmPolicy of a configuration; throws a ConfigError when an allowed URI could never be used. */
export function kvmPolicyOf (config: { readonly KVM_SSH_KEY_DIR: string | undefined, readonly KVM_ALLOWED_URIS: readonly string[] | undefined }): KvmPolicy {
  const policy: KvmPolicy = { sshKeyDir: config.KVM_SSH_KEY_DIR, allowedUris: config.KVM_ALLOWED_URIS }
  for (const uri of policy.allowedUris ?? []) {
    const problem = libvirtUriProblem(uri, { sshKeyDir: policy.sshKeyDir })
    if (problem !== undefined) throw new ConfigError('KVM_ALLOWED_URIS', `${uri}: ${problem}`)
  }
  return policy
}

/**
 * The key console targets travel under, from the agents to the gateway, and console URLs from the gateway
 * to the API. The gateway holds this one and its own CONSOLE_KEY, never PORTHOLE_SECRET_KEY: whoever takes
 * the gateway can open no server's credentials.
 */
/** Where browsers reach the console gateway: the gateway builds console URLs on it, the API share URLs. */
export const publicGatewaySettings = {
  PUBLIC_GATEWAY_URL: url('the gateway as browsers reach it (console URLs are built on it, share URLs by the API); may carry a path prefix behind a TLS-terminating proxy, e.g. `https://example.com/console-gw`', 'http://127.0.0.1:8081', ['http', 'https'])
}

/** The audit log, written by the API and by the console gateway (renewals from the console page). */
export const auditSettings = {
  AUDIT_RETENTION_DAYS: int('days audit entries are kept (each tenant has its own stream, trimmed by age)', 90, 1, 3650)
}

export const consoleTransitKeySettings = {
  CONSOLE_TRANSIT_KEY: required(secret('32 random bytes, base64, distinct from PORTHOLE_SECRET_KEY and CONSOLE_KEY: seals console targets from the agents to the console gateway, and console URLs from the gateway to the API (`openssl rand -base64 32`)')),
  CONSOLE_TRANSIT_KEY_ID: str('id of CONSOLE_TRANSIT_KEY, stored with every box it seals so the key can be rotated', 't1'),
  CONSOLE_OLD_TRANSIT_KEYS: secret('earlier transit keys still accepted for opening, as `id:base64,id:base64`', '')
}

/** Whether a value is a settings spec (what a service's config module exports as its declarations). */
export function isSpec (v: unknown): v is Spec {
  return v !== null && typeof v === 'object' && Object.values(v).length > 0 &&
    Object.values(v).every(x => x !== null && typeof x === 'object' && typeof (x as Setting<unknown>).parse === 'function' && typeof (x as Setting<unknown>).doc === 'string')
}

/** A setting's default as the README shows it: `**required**`, nothing for a secret or an empty default. */
export function shownDefault (s: Setting<unknown>): string {
  if (s.required === true) return '**required**'
  if (s.secret === true) return ''
  const d = s.default
  if (d === undefined || d === '' || (Array.isArray(d) && d.length === 0)) return ''
  if (typeof d === 'object' && d !== null && !Array.isArray(d)) return Object.keys(d).length === 0 ? '' : '`' + JSON.stringify(d) + '`'
  return '`' + (Array.isArray(d) ? d.join(',') : String(d)) + '`'
}

/**
 * The README's settings table (scripts/settings-table.mjs prints it): one row per variable, in the order the
 * services declare them, naming the services that read it ("all" when every one does).
 */
export function settingsTable (specs: ReadonlyArray<readonly [service: string, spec: Spec]>): string {
  const services = new Set(specs.map(([svc]) => svc))
  const rows = new Map<string, { services: string[], s: Setting<unknown> }>()
  for (const [svc, spec] of specs) {
    for (const [name, s] of Object.entries(spec)) {
      const r = rows.get(name) ?? { services: [], s }
      if (!r.services.includes(svc)) r.services.push(svc)
      rows.set(name, r)
    }
  }
  const lines = ['| variable | default | used by | meaning |', '|---|---|---|---|']
  for (const [name, { services: by, s }] of rows) {
    lines.push(`| \`${name}\` | ${shownDefault(s)} | ${by.length === services.size ? 'all' : by.join(', ')} | ${s.doc.replaceAll('|', '\\|')} |`)
  }
  return lines.join('\n')
}
