/**
 * What `/v1/events` and webhooks tell: job state changes (JobEvent, in job.ts), console session events and
 * kiosk pool events (PoolEvent, in pool.ts),
 * all read from one Redis stream that the stores append to in the same step as each change (store/events.ts).
 */
import { Type, type Static } from '@sinclair/typebox'
import { Id, ServerId, TenantId, Timestamp } from './common.js'
import { JOB_STATES } from './job.js'
import { POOL_EVENTS } from './pool.js'

/**
 * What happened to a console session: `opened` (the gateway minted it), `connected` (a viewer attached),
 * `closed` (its viewer left and no other took over), `expired` (its time ran out, not revoked before),
 * `revoked` (by `DELETE /v1/console-sessions/{id}`, a key's deletion or a tenant's suspension).
 */
export const CONSOLE_EVENTS = ['opened', 'connected', 'closed', 'expired', 'revoked'] as const
export type ConsoleEventName = typeof CONSOLE_EVENTS[number]

/** A console session event: the data of an SSE `event: console` and of a webhook's `console.*` message. */
export const ConsoleEvent = Type.Object({
  sessionId: Id,
  tenantId: TenantId,
  serverId: ServerId,
  event: Type.Union(CONSOLE_EVENTS.map(e => Type.Literal(e))),
  at: Timestamp
}, { additionalProperties: false })
export type ConsoleEvent = Static<typeof ConsoleEvent>

/**
 * Every event type a webhook can ask for: `job.<state>` for each job state, `console.<event>` for each
 * console event. (The SSE `event:` field is the family alone, `job` or `console`; the data says the rest.)
 */
export const EVENT_TYPES = [...JOB_STATES.map(s => `job.${s}` as const), ...CONSOLE_EVENTS.map(e => `console.${e}` as const), ...POOL_EVENTS.map(e => `pool.${e}` as const)] as const
export type EventType = typeof EVENT_TYPES[number]

/** A webhook's subscription: an event type, or `job.*` / `console.*` / `pool.*` for a whole family. */
export const EventPattern = Type.Union([...EVENT_TYPES, 'job.*', 'console.*', 'pool.*'].map(t => Type.Literal(t)))
export type EventPattern = Static<typeof EventPattern>

/** Whether `type` is one of `patterns` (no patterns: every event). */
export function eventMatches (patterns: readonly string[] | undefined, type: string): boolean {
  if (patterns === undefined || patterns.length === 0) return true
  const family = type.slice(0, type.indexOf('.'))
  return patterns.some(p => p === type || p === `${family}.*`)
}

/**
 * A webhook delivery's body (the Standard Webhooks payload shape): `type`, when it happened, and the event.
 * `data` is a JobEvent for `job.*`, a ConsoleEvent for `console.*`, a PoolEvent for `pool.*`.
 */
export const WebhookPayload = Type.Object({
  type: Type.String({ description: 'an EventType: job.<state> or console.<event>' }),
  timestamp: Timestamp,
  data: Type.Record(Type.String(), Type.Unknown())
}, { additionalProperties: false })
export type WebhookPayload = Static<typeof WebhookPayload>

/** A registered webhook as the API shows it (the secret is shown once, at creation). */
export const Webhook = Type.Object({
  id: Id,
  tenantId: TenantId,
  url: Type.String({ format: 'uri' }),
  events: Type.Optional(Type.Array(EventPattern, { description: 'the event types delivered; absent: all' })),
  createdAt: Timestamp,
  disabledAt: Type.Optional(Timestamp),
  disabledReason: Type.Optional(Type.String())
}, { additionalProperties: false })
export type Webhook = Static<typeof Webhook>

/** One attempt of a delivery: the endpoint's status (none when it did not answer) and how long it took. */
export const DeliveryAttempt = Type.Object({
  at: Timestamp,
  status: Type.Optional(Type.Integer()),
  error: Type.Optional(Type.String()),
  ms: Type.Number()
}, { additionalProperties: false })
export type DeliveryAttempt = Static<typeof DeliveryAttempt>

/**
 * One event's delivery to one webhook. `pending` until the endpoint answers 2xx (`delivered`), the retries
 * run out (`failed`: a day of exponential backoff), or the endpoint answers 410 or the webhook is deleted
 * (`cancelled`).
 */
export const WebhookDelivery = Type.Object({
  id: Type.String({ description: 'the webhook-id header: the same for every attempt' }),
  webhookId: Id,
  eventId: Type.String({ description: "the event's stream id (as in /v1/events)" }),
  type: Type.String(),
  outcome: Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed'), Type.Literal('cancelled')]),
  createdAt: Timestamp,
  nextAttemptAt: Type.Optional(Timestamp),
  attempts: Type.Array(DeliveryAttempt)
}, { additionalProperties: false })
export type WebhookDelivery = Static<typeof WebhookDelivery>
