import { Type, type Static } from '@sinclair/typebox'
import { Id, JobId, Sealed, ServerId, TenantId, Timestamp } from './common.js'

/** `serial`: the server's serial console over IPMI Serial-over-LAN, as a text terminal (ipmi servers only). */
export const CONSOLE_PROTOCOLS = ['vnc', 'guacamole', 'serial'] as const
export const ConsoleProtocol = Type.Union(CONSOLE_PROTOCOLS.map(p => Type.Literal(p)))
export type ConsoleProtocol = typeof CONSOLE_PROTOCOLS[number]

/** Two hours: the longest a console token may live. */
export const MAX_CONSOLE_TTL_SECONDS = 7200
/** A day: the longest a console session may live, renewals included (CONSOLE_MAX_TOTAL_SECONDS is at most this). */
export const MAX_CONSOLE_TOTAL_SECONDS = 86_400
/** Eight hours: CONSOLE_MAX_TOTAL_SECONDS unless set (and the limit of a console job that names none). */
export const DEFAULT_CONSOLE_MAX_TOTAL_SECONDS = 28_800

/** What a console job asks for. */
export const ConsoleParams = Type.Object({
  protocol: ConsoleProtocol,
  ttlSeconds: Type.Integer({ minimum: 10, maximum: MAX_CONSOLE_TTL_SECONDS }),
  singleUse: Type.Boolean(),
  /** The console page may renew the session itself, in its last five minutes. */
  renewable: Type.Optional(Type.Boolean()),
  /** The longest the session may live, renewals included (the API's CONSOLE_MAX_TOTAL_SECONDS). */
  maxTotalSeconds: Type.Optional(Type.Integer({ minimum: 10, maximum: MAX_CONSOLE_TOTAL_SECONDS })),
  /** A kiosk pool's session: closed after this many seconds without keyboard or mouse input, whatever CONSOLE_IDLE_SECONDS says. */
  idleSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_CONSOLE_TTL_SECONDS }))
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
  revokedAt: Type.Optional(Timestamp),
  /** Renewals: the lifetime asked for at first (a renewal without ttlSeconds gives this again), whether the page may renew, and the latest expiry renewals may reach. */
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
  renewable: Type.Optional(Type.Boolean()),
  maxExpiresAt: Type.Optional(Timestamp),
  /** A single-use session: the SHA-256 of the resume secret its first viewer offered, which lets that viewer (and only it) come back. */
  resumeHash: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })),
  /** A kiosk pool's session: its viewer is closed after this many seconds without input (ConsoleParams.idleSeconds). */
  idleSeconds: Type.Optional(Type.Integer({ minimum: 1 }))
}, { additionalProperties: false })
export type ConsoleSession = Static<typeof ConsoleSession>

/** A console session as the API shows it. */
export const ConsoleSessionView = Type.Object({
  ...Type.Pick(ConsoleSession, ['id', 'serverId', 'tenantId', 'protocol', 'createdAt', 'expiresAt', 'singleUse']).properties,
  /** Whether a viewer is connected now. */
  connected: Type.Boolean(),
  revokedAt: Type.Optional(Timestamp),
  renewable: Type.Boolean(),
  /** The latest expiry renewals may reach. */
  maxExpiresAt: Type.Optional(Timestamp)
}, { additionalProperties: false })
export type ConsoleSessionView = Static<typeof ConsoleSessionView>

/** `POST /v1/console-sessions/{id}/renew`: a new expiry, `ttlSeconds` from now (default: the session's first lifetime). */
export const ConsoleRenewRequest = Type.Object({
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 10, maximum: MAX_CONSOLE_TTL_SECONDS, description: `seconds from now (at most ${MAX_CONSOLE_TTL_SECONDS}; default: the session's first lifetime)` }))
}, { additionalProperties: false })
export type ConsoleRenewRequest = Static<typeof ConsoleRenewRequest>

/** `POST /v1/console-sessions/{id}/share`: a second URL for the same screen. */
export const ConsoleShareRequest = Type.Object({
  viewOnly: Type.Optional(Type.Boolean({ description: 'its viewers see the screen and send nothing to the server (default true; enforced by the gateway)' })),
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 10, maximum: MAX_CONSOLE_TTL_SECONDS, description: 'lifetime of the share (default and at most the session\'s own; it never outlives the session)' })),
  label: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[^\\u0000-\\u001f\\u007f]+$', description: 'who it is for, shown to the session\'s owner while they watch' }))
}, { additionalProperties: false })
export type ConsoleShareRequest = Static<typeof ConsoleShareRequest>

/** A share's answer: its URL (shown once: it carries the share's only token). */
export const ConsoleShare = Type.Object({
  shareId: Id,
  sessionId: Id,
  url: Type.String({ description: 'open this in a browser; it carries the only copy of the share\'s token' }),
  viewOnly: Type.Boolean(),
  expiresAt: Timestamp,
  label: Type.Optional(Type.String())
}, { additionalProperties: false })
export type ConsoleShare = Static<typeof ConsoleShare>

/** A share as Redis keeps it (the token's SHA-256 only). Revoking its session ends it. */
export const ConsoleShareRecord = Type.Object({
  id: Id,
  sessionId: Id,
  tokenHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  viewOnly: Type.Boolean(),
  label: Type.Optional(Type.String()),
  createdAt: Timestamp,
  createdBy: Type.String(),
  expiresAt: Timestamp
}, { additionalProperties: false })
export type ConsoleShareRecord = Static<typeof ConsoleShareRecord>

/** Who watches a session through a share, as its owner's page is told. */
export const ConsoleWatcher = Type.Object({ shareId: Id, viewOnly: Type.Boolean(), label: Type.Optional(Type.String()), since: Timestamp }, { additionalProperties: false })
export type ConsoleWatcher = Static<typeof ConsoleWatcher>

/** The console URL for a session: `<PUBLIC_GATEWAY_URL>/s/<sessionId>#<token>`; the token travels in the fragment only. */
export function consoleUrl (publicUrl: string, sessionId: string, token: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/s/${sessionId}#${token}`
}

/** A renewal's answer: the session's new expiry (a live socket stays open until then). */
export const ConsoleRenewal = Type.Object({ sessionId: Id, expiresAt: Timestamp, maxExpiresAt: Type.Optional(Timestamp) }, { additionalProperties: false })
export type ConsoleRenewal = Static<typeof ConsoleRenewal>

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
