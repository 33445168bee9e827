/**
 * Kiosk pools: warm linked clones of a template domain, handed out one per visitor and destroyed after use.
 * The API stores a pool's spec; the agents' pool controller (services/agents/src/kvm/pools) keeps its clones,
 * which libvirt tags with the pool, slot and generation; the API hands a ready clone out in one atomic step.
 */
import { Type, type Static } from '@sinclair/typebox'
import { Id, ServerId, TenantId, Timestamp } from './common.js'
import { MAX_CONSOLE_TTL_SECONDS } from './console.js'

/** A pool's name: lower case, digits and hyphens; every clone's domain name begins with it. */
export const PoolName = Type.String({ minLength: 2, maxLength: 32, pattern: '^[a-z][a-z0-9-]*[a-z0-9]$', description: 'lower case letters, digits and hyphens (2 to 32); clone domain names begin with it' })
/** A hook: the name of an executable in the agents' POOL_HOOKS_DIR (no path). */
export const PoolHookName = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', description: "an executable's name in the agents' POOL_HOOKS_DIR" })
/** A picture the station page shows while nobody uses it. */
export const AttractPicture = Type.String({ minLength: 1, maxLength: 2048, pattern: '^(https://|http://|/)[^\\s]*$', description: 'a picture URL (https, http or a path on the gateway)' })

/** The most clones a pool keeps. */
export const MAX_POOL_SIZE = 32
/** The idle timeout a pool gets unless it names one. */
export const DEFAULT_POOL_IDLE_SECONDS = 300
/** The session limit a pool gets unless it names one. */
export const DEFAULT_POOL_MAX_SESSION_SECONDS = 3600
/** Clone failures within `POOL_FAILURE_WINDOW_SECONDS` that stop a pool's refill. */
export const POOL_FAILURE_LIMIT = 3
export const POOL_FAILURE_WINDOW_SECONDS = 600

const PoolSettings = {
  /** The template: a defined libvirt domain (on the agents' POOL_LIBVIRT_URI) whose first disk is a qcow2 golden image. */
  template: Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\s/]+$', description: "a defined libvirt domain on the agents' POOL_LIBVIRT_URI; its first disk is the qcow2 golden image" }),
  size: Type.Integer({ minimum: 1, maximum: MAX_POOL_SIZE, description: 'clean clones kept booted and ready' }),
  idleTimeoutSeconds: Type.Integer({ minimum: 10, maximum: MAX_CONSOLE_TTL_SECONDS, description: `a session without keyboard or mouse input for this long ends (default ${DEFAULT_POOL_IDLE_SECONDS})` }),
  maxSessionSeconds: Type.Integer({ minimum: 60, maximum: MAX_CONSOLE_TTL_SECONDS, description: `the longest a session lives (default ${DEFAULT_POOL_MAX_SESSION_SECONDS}, at most ${MAX_CONSOLE_TTL_SECONDS})` }),
  hooks: Type.Array(PoolHookName, { maxItems: 8, description: 'run in turn on each new clone before it boots' }),
  attract: Type.Array(AttractPicture, { maxItems: 32, description: 'pictures the station page shows while idle' })
}

/** `POST /v1/pools`. */
export const PoolCreate = Type.Object({
  name: PoolName,
  tenantId: TenantId,
  template: PoolSettings.template,
  size: PoolSettings.size,
  idleTimeoutSeconds: Type.Optional(PoolSettings.idleTimeoutSeconds),
  maxSessionSeconds: Type.Optional(PoolSettings.maxSessionSeconds),
  hooks: Type.Optional(PoolSettings.hooks),
  attract: Type.Optional(PoolSettings.attract)
}, { additionalProperties: false })
export type PoolCreate = Static<typeof PoolCreate>

/** `PATCH /v1/pools/{name}`: a new template or hooks (or any change of a failing pool) re-checks the template and clears the failures; size, pictures and timeouts apply in place. */
export const PoolPatch = Type.Partial(Type.Object(PoolSettings, { additionalProperties: false }), { additionalProperties: false })
export type PoolPatch = Static<typeof PoolPatch>

/**
 * `checking`: its template is being checked (after create or PATCH) and nothing is cloned; `active`: kept
 * full; `failing`: POOL_FAILURE_LIMIT clone failures within the window stopped its refill until a PATCH;
 * `deleting`: its clones are being removed.
 */
export const POOL_STATES = ['checking', 'active', 'failing', 'deleting'] as const
export const PoolState = Type.Union(POOL_STATES.map(s => Type.Literal(s)))
export type PoolState = typeof POOL_STATES[number]

/** A pool as Redis keeps it. `poolId` is the small number in its clones' MACs; `generation` counts template checks. */
export const Pool = Type.Object({
  name: PoolName,
  tenantId: TenantId,
  poolId: Type.Integer({ minimum: 1, maximum: 65535 }),
  template: PoolSettings.template,
  size: PoolSettings.size,
  idleTimeoutSeconds: PoolSettings.idleTimeoutSeconds,
  maxSessionSeconds: PoolSettings.maxSessionSeconds,
  hooks: PoolSettings.hooks,
  attract: PoolSettings.attract,
  state: PoolState,
  generation: Type.Integer({ minimum: 1 }),
  /** The golden image the template's first disk names (known once checked). */
  image: Type.Optional(Type.String()),
  lastError: Type.Optional(Type.String({ maxLength: 1000 })),
  lastErrorAt: Type.Optional(Timestamp),
  createdAt: Timestamp,
  updatedAt: Timestamp
}, { additionalProperties: false })
export type Pool = Static<typeof Pool>

/** A pool as the API shows it: its spec and state, and how many of its clones are in each state now. */
export const PoolView = Type.Object({
  ...Type.Omit(Pool, ['image', 'template', 'hooks']).properties,
  /** Admins and operators only: customers are never shown a domain name or what runs on the agents. */
  template: Type.Optional(Pool.properties.template),
  hooks: Type.Optional(Pool.properties.hooks),
  ready: Type.Integer({ description: 'booted, clean, waiting for a hand-out' }),
  starting: Type.Integer({ description: 'being cloned or booted' }),
  inUse: Type.Integer({ description: 'handed out (and not yet destroyed)' }),
  failing: Type.Integer({ description: 'clone failures within the last 10 minutes' })
}, { additionalProperties: false })
export type PoolView = Static<typeof PoolView>

/**
 * A clone's life: `starting` (recorded before anything is made), `ready` (in the pool's ready list),
 * `claimed` (taken by one hand-out, its console being made), `in_use` (its console handed out), `disposing`
 * (being destroyed). It never goes back: a clone handed out is destroyed after, never returned.
 */
export const CLONE_STATES = ['starting', 'ready', 'claimed', 'in_use', 'disposing'] as const
export type CloneState = typeof CLONE_STATES[number]

/** A clone as Redis keeps it, beside what libvirt's metadata says of it. */
export const PoolClone = Type.Object({
  name: Type.String({ description: 'the domain name: `<pool>-<slot>-<serial>`, never reused' }),
  serverId: ServerId,
  pool: PoolName,
  slot: Type.Integer({ minimum: 0 }),
  generation: Type.Integer({ minimum: 1 }),
  state: Type.Union(CLONE_STATES.map(s => Type.Literal(s))),
  overlay: Type.String(),
  createdAt: Timestamp,
  readyAt: Type.Optional(Timestamp),
  claimedAt: Type.Optional(Timestamp),
  sessionId: Type.Optional(Id),
  /** When its viewer left (the disconnect grace runs from here). */
  leftAt: Type.Optional(Timestamp),
  disposeReason: Type.Optional(Type.String())
}, { additionalProperties: false })
export type PoolClone = Static<typeof PoolClone>

/** `POST /v1/pools/{name}/sessions`: a clean VM's console. */
export const PoolSession = Type.Object({
  sessionId: Id,
  url: Type.String({ description: 'open this in a browser; it carries the only copy of the token' }),
  expiresAt: Timestamp,
  serverId: ServerId
}, { additionalProperties: false })
export type PoolSession = Static<typeof PoolSession>

/** Why a handed-out clone is destroyed. */
export const DISPOSE_REASONS = ['disconnected', 'idle', 'expired', 'revoked', 'claim-failed', 'orphan', 'stale', 'deleted'] as const
export type DisposeReason = typeof DISPOSE_REASONS[number]

/**
 * What happened in a pool, on `/v1/events` (`event: pool`) and as webhooks `pool.<event>`: `changed` (created,
 * patched or being deleted: its template is to be checked), `ready` (a clone
 * booted), `clone-failed`, `handed-out`, `miss` (a hand-out found none ready), `disposed`, `failing` (refill
 * stopped), `checked` (its template passed), `refused` (its template did not).
 */
export const POOL_EVENTS = ['changed', 'checked', 'refused', 'ready', 'clone-failed', 'handed-out', 'miss', 'disposed', 'failing'] as const
export type PoolEventName = typeof POOL_EVENTS[number]

export const PoolEvent = Type.Object({
  pool: PoolName,
  tenantId: TenantId,
  event: Type.Union(POOL_EVENTS.map(e => Type.Literal(e))),
  serverId: Type.Optional(ServerId),
  slot: Type.Optional(Type.Integer()),
  reason: Type.Optional(Type.String({ maxLength: 1000 })),
  at: Timestamp
}, { additionalProperties: false })
export type PoolEvent = Static<typeof PoolEvent>

/** The locally administered, unicast prefix of every clone MAC. */
export const POOL_MAC_PREFIX = '0a:50'

/**
 * A clone's MAC: prefix : pool id (two bytes) : slot : NIC, the same for a slot's every clone, so DHCP
 * reservations can be made per slot.
 */
export function poolMac (poolId: number, slot: number, nic: number): string {
  const b = (n: number): string => n.toString(16).padStart(2, '0')
  return `${POOL_MAC_PREFIX}:${b(poolId >> 8 & 0xff)}:${b(poolId & 0xff)}:${b(slot & 0xff)}:${b(nic & 0xff)}`
}

/** The domain name of a pool's clone: `<pool>-<slot>-<serial>` (the serial is never reused). */
export function cloneName (pool: string, slot: number, serial: string): string {
  return `${pool}-${slot}-${serial}`
}

/** The pool and slot a clone's domain name stands for, or undefined for a name of another shape. */
export function parseCloneName (name: string): { pool: string, slot: number, serial: string } | undefined {
  const m = /^([a-z][a-z0-9-]*[a-z0-9])-(\d{1,3})-([a-z0-9]+)$/.exec(name)
  return m === null ? undefined : { pool: m[1] as string, slot: Number(m[2]), serial: m[3] as string }
}

/** Exactly the fields of the PoolEvent contract (what `/v1/events` and webhooks send of a stored event). */
export function poolEventView (e: PoolEvent): PoolEvent {
  const v: PoolEvent = { pool: e.pool, tenantId: e.tenantId, event: e.event, at: e.at }
  if (e.serverId !== undefined) v.serverId = e.serverId
  if (e.slot !== undefined) v.slot = e.slot
  if (e.reason !== undefined) v.reason = e.reason
  return v
}
