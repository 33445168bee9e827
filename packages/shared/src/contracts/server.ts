import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { MASK, Sealed, ServerId, TenantId, Timestamp } from './common.js'

export const AGENT_TYPES = ['kvm', 'ipmi', 'ovirt'] as const
export const AgentType = Type.Union(AGENT_TYPES.map(a => Type.Literal(a)))
export type AgentType = typeof AGENT_TYPES[number]

const Host = Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.:\\[\\]_-]+$', description: 'host name or IP address' })
const Port = Type.Integer({ minimum: 1, maximum: 65535 })
const Secret = Type.String({ minLength: 1, maxLength: 256, writeOnly: true })

/** `agent: 'kvm'`: a libvirt URI (`qemu:///system`, `qemu+ssh://host/system`) and the domain's name or UUID. */
export const KvmConnection = Type.Object({
  uri: Type.String({ minLength: 1, maxLength: 512, pattern: '^[a-z0-9+]+://' }),
  domain: Type.String({ minLength: 1, maxLength: 200 })
}, { additionalProperties: false })
export type KvmConnection = Static<typeof KvmConnection>

/** `agent: 'ipmi'`: the BMC's IPMI-over-LAN address and credentials. */
export const IpmiConnection = Type.Object({
  host: Host,
  port: Type.Optional(Port),
  username: Type.String({ minLength: 1, maxLength: 64 }),
  password: Secret,
  /** IPMI v2 cipher suite; 3 works with most BMCs (and ipmi_sim). */
  cipherSuite: Type.Optional(Type.Integer({ minimum: 0, maximum: 17 }))
}, { additionalProperties: false })
export type IpmiConnection = Static<typeof IpmiConnection>

/** libvirt transports a server record may use. `ext` (runs a command) and the like are refused. */
export const LIBVIRT_SCHEMES = ['qemu', 'qemu+ssh', 'qemu+libssh', 'qemu+libssh2', 'qemu+tls', 'qemu+tcp', 'qemu+unix', 'test'] as const
/** URI parameters a server record may set; `command`, `netcat`, `socket` and `proxy` would run or reach anything. */
export const LIBVIRT_PARAMS = ['keyfile', 'known_hosts', 'known_hosts_verify', 'no_verify', 'no_tty', 'sshauth', 'pkipath'] as const

/**
 * Why a libvirt URI is refused, or undefined when it is fine. The agents run as a trusted process holding
 * every server's credentials, so a URI must not make libvirt run a command (`qemu+ext://…?command=`) or
 * reach an arbitrary socket.
 */
export function libvirtUriProblem (uri: string): string | undefined {
  const m = /^([a-z0-9+]+):\/\/([^/?#]*)(\/[^?#]*)?(\?[^#]*)?$/.exec(uri)
  if (m === null) return 'expected a libvirt URI such as qemu:///system or qemu+ssh://host/system'
  const scheme = m[1] as string
  if (!(LIBVIRT_SCHEMES as readonly string[]).includes(scheme)) return `transport ${scheme} is not allowed (allowed: ${LIBVIRT_SCHEMES.join(', ')})`
  for (const name of new URLSearchParams((m[4] ?? '').slice(1)).keys()) {
    if (!(LIBVIRT_PARAMS as readonly string[]).includes(name)) return `parameter ${name} is not allowed (allowed: ${LIBVIRT_PARAMS.join(', ')})`
  }
  return undefined
}

/** The oVirt engine's web context: fixed by the engine (its SSO lives beside the API under it). */
export const OVIRT_ENGINE_CONTEXT = '/ovirt-engine'

/**
 * An oVirt engine URL as users write it, in the one form a server record stores: `https://host[:port]/…/ovirt-engine`.
 * Accepted: the engine's base (`https://engine.example/ovirt-engine`), its API (`…/ovirt-engine/api`, the form of
 * the SDKs and the engine's documentation, or `…/api/v4`), each with or without a trailing slash; the context may
 * sit under a reverse proxy's prefix (`https://gw.example/dc1/ovirt-engine`). Refused: anything but https, user
 * info, a query or fragment, empty path segments, and a path that does not end in `/ovirt-engine` once the API
 * part is taken off. Returns the normal form, or why `url` is not an engine URL.
 */
export function ovirtEngineUrl (url: string): { url: string } | { problem: string } {
  if (/[?#]/.test(url)) return { problem: 'no query or fragment: expected the engine URL, such as https://engine.example/ovirt-engine' }
  let u: URL
  try { u = new URL(url) } catch { return { problem: 'not a URL: expected https://engine.example/ovirt-engine' } }
  if (u.protocol !== 'https:') return { problem: 'https only: the password goes to the engine' }
  if (u.username !== '' || u.password !== '') return { problem: 'no user name or password in the URL: use connection.username and connection.password' }
  if (u.hostname === '') return { problem: 'no host: expected https://engine.example/ovirt-engine' }
  const path = u.pathname.replace(/\/+$/, '').replace(/\/api(\/v4)?$/, '')
  if (!path.endsWith(OVIRT_ENGINE_CONTEXT) || path.split('/').slice(1).some(s => s === '')) {
    return { problem: `the path must end in ${OVIRT_ENGINE_CONTEXT} (or ${OVIRT_ENGINE_CONTEXT}/api), as in https://engine.example/ovirt-engine` }
  }
  return { url: u.origin + path }
}

/** `agent: 'ovirt'`: the engine's base URL (`https://engine.example/ovirt-engine`), an account and the VM's id. */
export const OvirtConnection = Type.Object({
  url: Type.String({ minLength: 1, maxLength: 512, pattern: '^https://', description: 'HTTPS only: the password goes to the engine. With or without /api and a trailing slash; stored as https://engine.example/ovirt-engine (see ovirtEngineUrl)' }),
  username: Type.String({ minLength: 1, maxLength: 128 }),
  password: Secret,
  vmId: Type.String({ minLength: 1, maxLength: 64 }),
  caCert: Type.Optional(Type.String({ maxLength: 16384, description: 'PEM of the engine CA' }))
}, { additionalProperties: false })
export type OvirtConnection = Static<typeof OvirtConnection>

/** A VNC endpoint of the server's own (an iDRAC or iLO VNC server, for IPMI hosts). */
export const ConsoleEndpoint = Type.Object({
  host: Type.Optional(Host),
  port: Type.Optional(Port),
  password: Type.Optional(Secret)
}, { additionalProperties: false })
export type ConsoleEndpoint = Static<typeof ConsoleEndpoint>

/** The connection schema for each agent type. */
export const CONNECTION_SCHEMAS: Record<AgentType, TSchema> = {
  kvm: KvmConnection,
  ipmi: IpmiConnection,
  ovirt: OvirtConnection
}

/** Body of `POST /v1/servers`. The connection is checked against its agent's schema by the API. */
export const ServerCreate = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200 }),
  tenantId: TenantId,
  agent: AgentType,
  connection: Type.Record(Type.String(), Type.Unknown()),
  console: Type.Optional(ConsoleEndpoint)
}, { additionalProperties: false })
export type ServerCreate = Static<typeof ServerCreate>

/** Body of `PATCH /v1/servers/{id}`: members replace the stored ones; connection members merge. */
export const ServerPatch = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  connection: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  console: Type.Optional(ConsoleEndpoint)
}, { additionalProperties: false, minProperties: 1 })
export type ServerPatch = Static<typeof ServerPatch>

/** The secrets of a server, sealed together in `StoredServer.secrets`. */
export interface ServerSecrets {
  connection?: { password?: string }
  console?: { password?: string }
}

/** Where a secret sits in a server record. */
export const SECRET_PATHS = ['connection.password', 'console.password'] as const
export const SecretPath = Type.Union(SECRET_PATHS.map(p => Type.Literal(p)))
export type SecretPath = typeof SECRET_PATHS[number]

/**
 * A server as stored in Redis and as sent to agents: `connection` and `console` without their passwords,
 * which live sealed in `secrets` (AES-256-GCM, bound to the server's id).
 */
export const StoredServer = Type.Object({
  id: ServerId,
  tenantId: TenantId,
  name: Type.String(),
  agent: AgentType,
  connection: Type.Record(Type.String(), Type.Unknown()),
  console: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  secrets: Type.Optional(Sealed),
  /** Which secrets `secrets` holds, so that views can mask them without opening the box. */
  secretPaths: Type.Array(SecretPath),
  createdAt: Timestamp,
  updatedAt: Timestamp
}, { additionalProperties: false })
export type StoredServer = Static<typeof StoredServer>

/** A server as the API shows it: secrets as `"******"`. */
export const ServerView = Type.Object({
  id: ServerId,
  tenantId: TenantId,
  name: Type.String(),
  agent: AgentType,
  connection: Type.Record(Type.String(), Type.Unknown()),
  console: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  createdAt: Timestamp,
  updatedAt: Timestamp
})
export type ServerView = Static<typeof ServerView>

/** Splits a connection or console object into its public part and its password. */
export function splitSecrets (part: Record<string, unknown> | undefined): { pub: Record<string, unknown> | undefined, password: string | undefined } {
  if (part === undefined) return { pub: undefined, password: undefined }
  const { password, ...pub } = part
  return { pub, password: typeof password === 'string' ? password : undefined }
}

/** The API view of a stored server: every secret it holds shown as the mask. */
export function toServerView (s: StoredServer): ServerView {
  const view: ServerView = { id: s.id, tenantId: s.tenantId, name: s.name, agent: s.agent, connection: { ...s.connection }, createdAt: s.createdAt, updatedAt: s.updatedAt }
  if (s.secretPaths.includes('connection.password')) view.connection.password = MASK
  if (s.console !== undefined || s.secretPaths.includes('console.password')) {
    view.console = { ...(s.console ?? {}) }
    if (s.secretPaths.includes('console.password')) view.console.password = MASK
  }
  return view
}
