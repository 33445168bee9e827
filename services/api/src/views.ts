/**
 * What a caller may see of what others wrote. Admins and operators see everything. Customers see neither the
 * agents' failure messages (they can name BMC addresses, libvirt URIs, engine URLs, ipmitool output) nor who
 * else acted on their servers beyond that principal's role: no key id, no address; and of their servers only
 * what they are and can do (`CustomerServerView`), nothing of where they are hosted.
 *
 * Every way out goes through here: JSON answers through `responseView` (the `/v1` preSerialization hook, so
 * that a route returning jobs or audit entries cannot forget it), problem details of failed jobs through
 * `failureView` (problem.ts), the event stream through `eventView`.
 */
import { AGENT_TYPES, JobEvent as JobEventSchema, toCustomerServerView, type AuditEntry, type JobEvent, type JobFailure, type JobRecord, type ServerView } from '@porthole/contracts'
import type { ErrorCode } from '@porthole/contracts/errors'
import { keys } from '@porthole/shared/store'
import type { Principal } from './auth.js'
import type { Ctx } from './context.js'

/** What a customer reads instead of a job failure's message: one sentence per code, naming nothing of ours. */
export const CUSTOMER_FAILURE_MESSAGES: Readonly<Record<ErrorCode, string>> = {
  invalid: 'the request is not valid for this server',
  unauthorized: 'the request was not authenticated',
  forbidden: 'the request is not allowed for this server',
  not_found: 'the server was not found where it is hosted; please contact support',
  conflict: 'the server refused the request in its current state',
  unsupported: 'this server does not support the request',
  connection: "the server's management interface could not be reached",
  auth: "the server's management interface refused access; please contact support",
  action: 'the server could not carry out the request',
  timeout: 'the server did not answer in time',
  busy: 'the server is busy with another request; try again shortly',
  unavailable: 'the service is temporarily unavailable; try again shortly',
  poison: 'the request could not be processed; please contact support',
  internal: 'an internal error occurred; please contact support'
}

/** A requester whose key no longer exists: its role cannot be told any more. */
export const UNKNOWN_ROLE = 'unknown'

/** Admins and operators; anyone else (customers, and no principal at all) gets the restricted view. */
function seesAll (p: Principal | undefined): boolean {
  return p?.role === 'admin' || p?.role === 'operator'
}

/** A job failure as `p` may see it: for customers the message is the fixed sentence of its code. */
export function failureView (p: Principal | undefined, f: JobFailure): JobFailure {
  if (seesAll(p)) return f
  return { code: f.code, message: CUSTOMER_FAILURE_MESSAGES[f.code] ?? CUSTOMER_FAILURE_MESSAGES.internal, retryable: f.retryable }
}

/** An audit entry as `p` may see it: customers keep their own entries whole; others' show only the role. */
export function auditView (p: Principal | undefined, e: AuditEntry): AuditEntry {
  if (seesAll(p) || (p !== undefined && e.actor === p.id)) return e
  const { ip: _ip, ...rest } = e
  return { ...rest, actor: e.role }
}

/** Jobs as `p` may see them: failures as `failureView`, and another principal's request named by its role. */
export async function jobViews (ctx: Ctx, p: Principal | undefined, recs: JobRecord[]): Promise<JobRecord[]> {
  if (seesAll(p)) return recs
  const others = [...new Set(recs.map(r => r.requestedBy).filter(id => id !== p?.id))]
  const roles = await rolesOfKeys(ctx, others)
  return recs.map(r => {
    const v: JobRecord = { ...r }
    if (r.requestedBy !== p?.id) v.requestedBy = roles.get(r.requestedBy) ?? UNKNOWN_ROLE
    if (r.error !== undefined) v.error = failureView(p, r.error)
    return v
  })
}

const EVENT_MEMBERS = Object.keys(JobEventSchema.properties) as Array<keyof JobEvent>

/** Exactly the members of the JobEvent contract (its schema's), whatever else a publisher adds (a terminal event's record). */
export function eventView (e: JobEvent): JobEvent {
  return Object.fromEntries(EVENT_MEMBERS.map(k => [k, e[k]])) as JobEvent
}

function isJobRecord (x: unknown): x is JobRecord {
  const o = x as Partial<JobRecord> | null
  return typeof o === 'object' && o !== null && typeof o.id === 'string' && typeof o.requestedBy === 'string' &&
    typeof o.state === 'string' && Array.isArray(o.history)
}

function isServerView (x: unknown): x is ServerView {
  const o = x as Partial<ServerView> | null
  return typeof o === 'object' && o !== null && typeof o.id === 'string' && typeof o.tenantId === 'string' &&
    (AGENT_TYPES as readonly unknown[]).includes(o.agent) && typeof o.connection === 'object' && o.connection !== null
}

function isAuditEntry (x: unknown): x is AuditEntry {
  const o = x as Partial<AuditEntry> | null
  return typeof o === 'object' && o !== null && typeof o.actor === 'string' && typeof o.role === 'string' &&
    typeof o.action === 'string' && typeof o.result === 'string' && typeof o.at === 'string'
}

/**
 * A JSON answer as `p` may see it: job records, audit entries and servers (alone or in an array) go through
 * their views; anything else passes unchanged.
 */
export async function responseView (ctx: Ctx, p: Principal | undefined, payload: unknown): Promise<unknown> {
  if (seesAll(p)) return payload
  if (isJobRecord(payload)) return (await jobViews(ctx, p, [payload]))[0]
  if (isAuditEntry(payload)) return auditView(p, payload)
  if (isServerView(payload)) return toCustomerServerView(payload)
  if (!Array.isArray(payload)) return payload
  const jobs = payload.filter(isJobRecord)
  const viewed = jobs.length === 0 ? [] : await jobViews(ctx, p, jobs)
  let i = 0
  return payload.map(x => isJobRecord(x) ? viewed[i++] : isAuditEntry(x) ? auditView(p, x) : isServerView(x) ? toCustomerServerView(x) : x)
}

/** The role of each API key id that still exists (`bootstrap` is the admin token); two Redis round trips. */
async function rolesOfKeys (ctx: Ctx, ids: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const k = keys(ctx.ns)
  const lookup: string[] = []
  for (const id of ids) { if (id === 'bootstrap') out.set(id, 'admin'); else lookup.push(id) }
  if (lookup.length === 0) return out
  const hashes = await ctx.redis.mget(lookup.map(id => k.apiKeyById(id)))
  const found = lookup.flatMap((id, i) => { const h = hashes[i]; return typeof h === 'string' ? [{ id, h }] : [] })
  if (found.length === 0) return out
  const raws = await ctx.redis.mget(found.map(f => k.apiKey(f.h)))
  found.forEach((f, i) => {
    const raw = raws[i]
    if (typeof raw !== 'string') return
    try {
      const role = (JSON.parse(raw) as { role?: unknown }).role
      if (typeof role === 'string') out.set(f.id, role)
    } catch { /* an unreadable record: the role stays unknown */ }
  })
  return out
}
