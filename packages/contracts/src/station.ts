/**
 * Kiosk stations (issue #10 part 7): a long-lived page a kiosk browser keeps open full screen, which hands
 * out a fresh desktop of its pool on a touch. The station's secret travels only in its URL's fragment and,
 * from the page, in the `Authorization: Station <secret>` header; Redis keeps its SHA-256.
 */
import { Type, type Static } from '@sinclair/typebox'
import { Timestamp } from './common.js'

/** A year: how long a station's URL lasts unless asked otherwise. */
export const DEFAULT_STATION_TTL_DAYS = 365
/** Ten years: the longest a station's URL may last. */
export const MAX_STATION_TTL_DAYS = 3650

export const StationId = Type.String({ format: 'uuid' })

export const StationCreate = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'where the station stands, e.g. "Branch 12, desk 3"' })),
  ttlDays: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_STATION_TTL_DAYS, description: `how long its URL lasts (default ${DEFAULT_STATION_TTL_DAYS} days)` }))
}, { additionalProperties: false })
export type StationCreate = Static<typeof StationCreate>

/** A station as the API shows it: never its secret. */
export const Station = Type.Object({
  id: StationId,
  pool: Type.String(),
  tenantId: Type.String({ format: 'uuid' }),
  name: Type.String(),
  createdAt: Timestamp,
  createdBy: Type.String({ description: 'the API key id that created it' }),
  expiresAt: Timestamp,
  /** The console session the station is showing now, if any. */
  sessionId: Type.Optional(Type.String({ format: 'uuid' }))
}, { additionalProperties: false })
export type Station = Static<typeof Station>

/** `POST /v1/pools/{name}/stations` → 201: the URL (shown once) the kiosk browser opens. */
export const StationGrant = Type.Object({
  id: StationId,
  url: Type.String({ description: '<api>/station/<id>#<secret>: the secret is in the fragment, shown only in this response' }),
  expiresAt: Timestamp
}, { additionalProperties: false })
export type StationGrant = Static<typeof StationGrant>

/** What the station page reads (`GET /station/{id}/info`): the pictures to show and the session under way. */
export const StationInfo = Type.Object({
  name: Type.String(),
  pool: Type.String(),
  attract: Type.Array(Type.String()),
  session: Type.Optional(Type.Object({ sessionId: Type.String(), expiresAt: Timestamp }))
}, { additionalProperties: false })
export type StationInfo = Static<typeof StationInfo>

/** A station session's state (`GET /station/{id}/sessions/{sessionId}`): `ended` once revoked, expired or gone. */
export const StationSessionState = Type.Object({
  sessionId: Type.String(),
  state: Type.Union([Type.Literal('live'), Type.Literal('ended')]),
  reason: Type.Optional(Type.Union([Type.Literal('finished'), Type.Literal('revoked'), Type.Literal('expired'), Type.Literal('gone')])),
  expiresAt: Type.Optional(Timestamp)
}, { additionalProperties: false })
export type StationSessionState = Static<typeof StationSessionState>
