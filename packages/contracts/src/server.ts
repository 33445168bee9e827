/** Server records: what the API takes, stores and shows of a server, by agent type (connections: `connections.ts`). */
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import type { ValidationError } from './errors.js'
import { MASK, Sealed, ServerId, TenantId, Timestamp } from './common.js'
import { Host, IpmiConnection, KvmConnection, OvirtConnection, Port, Secret, kvmTarget, type KvmPolicy } from './connections.js'
import { compile } from './validate.js'
import { ConsoleProtocol } from './console.js'
import { POWER_ACTIONS, PowerAction } from './power.js'

export const AGENT_TYPES = ['kvm', 'ipmi', 'ovirt'] as const
export const AgentType = Type.Union(AGENT_TYPES.map(a => Type.Literal(a)))
export type AgentType = typeof AGENT_TYPES[number]

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

/** What a sealed secret is for: the connection's password (BMC, engine) or the console's (VNC). */
export const SECRET_PURPOSES = ['connection', 'console'] as const
export type SecretPurpose = typeof SECRET_PURPOSES[number]

/**
 * A server's secrets, one box per purpose, each bound (AES-GCM additional data) to the server's id, its
 * purpose and its destination: the fields of the record the secret is sent to (see `secretDestination` in
 * crypto). A box whose destination was changed outside the API does not open.
 */
export const SealedSecrets = Type.Object({
  connection: Type.Optional(Sealed),
  console: Type.Optional(Sealed)
}, { additionalProperties: false })
export type SealedSecrets = Static<typeof SealedSecrets>

/** A console endpoint as stored: its password lives in `sealed`. */
export const StoredConsoleEndpoint = Type.Omit(ConsoleEndpoint, ['password'])
export type StoredConsoleEndpoint = Static<typeof StoredConsoleEndpoint>

/** Each agent's connection as stored: without its password, which lives in `sealed`. */
export const STORED_CONNECTIONS = {
  kvm: KvmConnection,
  ipmi: Type.Omit(IpmiConnection, ['password']),
  ovirt: Type.Omit(OvirtConnection, ['password'])
} satisfies Record<AgentType, TSchema>

/** A stored server of one agent type: `agent` tags it, and its connection is that agent's. */
function storedOf<A extends AgentType> (agent: A) {
  return Type.Object({
    id: ServerId,
    tenantId: TenantId,
    name: Type.String(),
    agent: Type.Literal(agent),
    connection: STORED_CONNECTIONS[agent] as (typeof STORED_CONNECTIONS)[A],
    console: Type.Optional(StoredConsoleEndpoint),
    /** Earlier form, bound to the id only: upgraded to `sealed` by the API's re-seal pass. */
    secrets: Type.Optional(Sealed),
    sealed: Type.Optional(SealedSecrets),
    /** Which secrets the record holds, so that views can mask them without opening a box. */
    secretPaths: Type.Array(SecretPath),
    createdAt: Timestamp,
    updatedAt: Timestamp
  }, { additionalProperties: false })
}

export const StoredKvmServer = storedOf('kvm')
export type StoredKvmServer = Static<typeof StoredKvmServer>
export const StoredIpmiServer = storedOf('ipmi')
export type StoredIpmiServer = Static<typeof StoredIpmiServer>
export const StoredOvirtServer = storedOf('ovirt')
export type StoredOvirtServer = Static<typeof StoredOvirtServer>

/**
 * A server as stored in Redis and as sent to agents, tagged by `agent`: `connection` (that agent's, checked by
 * the agents before they use it) and `console` without their passwords, which live in `sealed` (AES-256-GCM,
 * bound to the server's id, purpose and destination). `secrets` is the earlier form (both passwords in one box
 * bound to the id only): the API's re-seal pass upgrades it, and agents refuse to use it. A new agent type adds
 * its connection to `STORED_CONNECTIONS` and its `storedOf(...)` here.
 */
export const StoredServer = Type.Union([StoredKvmServer, StoredIpmiServer, StoredOvirtServer], { description: 'a server record, by its agent type' })
export type StoredServer = Static<typeof StoredServer>
/** The stored server of one agent type. */
export type StoredServerOf<A extends AgentType> = Extract<StoredServer, { agent: A }>

const storedConnectionChecks = {
  ipmi: compile(STORED_CONNECTIONS.ipmi, 'ipmi connection'),
  ovirt: compile(STORED_CONNECTIONS.ovirt, 'ovirt connection')
}

/**
 * Why a stored server's connection is not its agent's (`StoredServer`'s variant), said as `member: why`, or
 * undefined when it is. kvm connections are said by `kvmTarget` (which knows each form's members); the agents
 * fail a job for such a record as invalid rather than treating its request as poison.
 */
export function connectionProblem (agent: AgentType, connection: unknown, policy: KvmPolicy = {}): string | undefined {
  try {
    if (agent === 'kvm') kvmTarget(connection, policy)
    else storedConnectionChecks[agent].parse(connection)
    return undefined
  } catch (err) {
    const e = err as ValidationError
    const field = e.details?.field
    // kvmTarget says `member: why`; a checker `invalid <name>: member: why`.
    return typeof field === 'string' ? e.message.replace(/^invalid \w+ connection: /, '') : e.message
  }
}

/** A server as the API shows it to admins and operators: secrets as `"******"`. */
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

/** The power actions each agent type carries out (IPMI has no suspend or resume). */
export const POWER_ACTIONS_OF: Readonly<Record<AgentType, readonly PowerAction[]>> = {
  kvm: POWER_ACTIONS,
  ipmi: ['on', 'off', 'shutdown', 'reboot', 'reset'],
  ovirt: POWER_ACTIONS
}

/**
 * A server as a customer sees it: what it is and what can be done with it, nothing of where it is hosted
 * (no host, user, URI, URL, CA, port or domain).
 */
export const CustomerServerView = Type.Object({
  id: ServerId,
  tenantId: TenantId,
  name: Type.String(),
  agent: AgentType,
  power: Type.Object({ actions: Type.Array(PowerAction) }, { additionalProperties: false }),
  console: Type.Object({ protocols: Type.Array(ConsoleProtocol) }, { additionalProperties: false }),
  createdAt: Timestamp,
  updatedAt: Timestamp
}, { additionalProperties: false, description: 'a server as its customer sees it' })
export type CustomerServerView = Static<typeof CustomerServerView>

/** The console protocols a server record offers: ipmi VNC only with a console endpoint, serial only for ipmi. */
export function consoleProtocolsOf (s: Pick<StoredServer, 'agent' | 'console'>): ConsoleProtocol[] {
  if (s.agent !== 'ipmi') return ['vnc', 'guacamole']
  const host = s.console?.host
  return typeof host === 'string' && host !== '' ? ['vnc', 'guacamole', 'serial'] : ['serial']
}

/** The customer's view of a stored server (or of its full view). */
export function toCustomerServerView (s: Pick<StoredServer, 'id' | 'tenantId' | 'name' | 'agent' | 'console' | 'createdAt' | 'updatedAt'>): CustomerServerView {
  return {
    id: s.id,
    tenantId: s.tenantId,
    name: s.name,
    agent: s.agent,
    power: { actions: [...POWER_ACTIONS_OF[s.agent]] },
    console: { protocols: consoleProtocolsOf(s) },
    createdAt: s.createdAt,
    updatedAt: s.updatedAt
  }
}
