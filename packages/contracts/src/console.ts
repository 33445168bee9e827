import { Type, type Static } from '@sinclair/typebox'
import { Id, JobId, Sealed, ServerId, TenantId, Timestamp } from './common.js'

/** `serial`: the server's serial console over IPMI Serial-over-LAN, as a text terminal (ipmi servers only). */
export const CONSOLE_PROTOCOLS = ['vnc', 'guacamole', 'serial'] as const
export const ConsoleProtocol = Type.Union(CONSOLE_PROTOCOLS.map(p => Type.Literal(p)))
export type ConsoleProtocol = typeof CONSOLE_PROTOCOLS[number]

/** Two hours: the longest a console token may live. */
export const MAX_CONSOLE_TTL_SECONDS = 7200

/** What a console job asks for. */
export const ConsoleParams = Type.Object({
  protocol: ConsoleProtocol,
  ttlSeconds: Type.Integer({ minimum: 10, maximum: MAX_CONSOLE_TTL_SECONDS }),
  singleUse: Type.Boolean()
}, { additionalProperties: false })
export type ConsoleParams = Static<typeof ConsoleParams>

const TargetHost = Type.String({ minLength: 1, maxLength: 253 })
const TargetPort = Type.Integer({ minimum: 1, maximum: 65535 })

/** A VNC server: the hypervisor's display, the BMC's own VNC, or the engine's; `password` is the VNC password (VNC uses at most 8 characters). */
export const VncConsoleTarget = Type.Object({
  kind: Type.Literal('vnc'),
  host: TargetHost,
  port: TargetPort,
  password: Type.Optional(Type.String({ maxLength: 256 }))
}, { additionalProperties: false })
export type VncConsoleTarget = Static<typeof VncConsoleTarget>

/**
 * An agent's serial-over-LAN bridge: `ticket` is the one-time bridge ticket (the BMC's own credentials never
 * leave the agents). Until every console gateway reads `ticket`, the agents send the same ticket as `password`
 * too (its earlier name) and the gateway keeps its successor there; then `password` goes and `ticket` becomes
 * required (docs/messages.md, "Console target").
 */
export const SolConsoleTarget = Type.Object({
  kind: Type.Literal('sol'),
  host: TargetHost,
  port: TargetPort,
  ticket: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  /** @deprecated the bridge ticket under its earlier name: read `ticket`. */
  password: Type.Optional(Type.String({ maxLength: 256 }))
}, { additionalProperties: false })
export type SolConsoleTarget = Static<typeof SolConsoleTarget>

/** A serial target's bridge ticket, under its name or its earlier one (targets sealed before `ticket`). */
export function solTicketOf (t: SolConsoleTarget): string | undefined {
  return t.ticket ?? t.password
}

/**
 * Where the gateway connects for a console, tagged by `kind`. Only ever travels sealed (see `Sealed`) and is
 * never shown to a browser or written to a log.
 */
export const ConsoleTarget = Type.Union([VncConsoleTarget, SolConsoleTarget], { description: 'a console target, by its kind' })
export type ConsoleTarget = Static<typeof ConsoleTarget>

/** A console session as the gateway stores it in Redis. The token itself is never stored, only its SHA-256. */
export const ConsoleSession = Type.Object({
  id: Id,
  serverId: ServerId,
  tenantId: TenantId,
  serverName: Type.String(),
  jobId: JobId,
  protocol: ConsoleProtocol,
  /** Sealed with the gateway's console key. */
  target: Sealed,
  tokenHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  createdAt: Timestamp,
  expiresAt: Timestamp,
  singleUse: Type.Boolean(),
  usedAt: Type.Optional(Timestamp),
  revokedAt: Type.Optional(Timestamp)
}, { additionalProperties: false })
export type ConsoleSession = Static<typeof ConsoleSession>

/** A console session as the API shows it. */
export const ConsoleSessionView = Type.Object({
  ...Type.Pick(ConsoleSession, ['id', 'serverId', 'tenantId', 'protocol', 'createdAt', 'expiresAt', 'singleUse']).properties,
  /** Whether a viewer is connected now. */
  connected: Type.Boolean(),
  revokedAt: Type.Optional(Timestamp)
}, { additionalProperties: false })
export type ConsoleSessionView = Static<typeof ConsoleSessionView>

/**
 * The result of a console job as recorded on the job. The URL is not kept here: it carries the session's
 * token, so the gateway hands it over sealed, once (see `ConsoleSessionStore.create`), and the API adds it
 * only to the one answer that delivers it to the requester.
 */
export const ConsoleResult = Type.Object({
  sessionId: Id,
  protocol: ConsoleProtocol,
  expiresAt: Timestamp,
  url: Type.Optional(Type.String({ description: 'present only in the one answer that delivers it' }))
}, { additionalProperties: false })
export type ConsoleResult = Static<typeof ConsoleResult>

/** What `POST /v1/servers/{id}/console` answers: everything a portal needs to open the console. */
export const ConsoleGrant = Type.Object({
  sessionId: Id,
  url: Type.String({ description: 'open this in a browser; it carries the only copy of the token' }),
  protocol: ConsoleProtocol,
  expiresAt: Timestamp
}, { additionalProperties: false })
export type ConsoleGrant = Static<typeof ConsoleGrant>
