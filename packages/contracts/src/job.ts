import { Type, type Static, type TProperties, type TSchema } from '@sinclair/typebox'
import { ERROR_CODES } from './errors.js'
import { Id, JobId, Role, Sealed, ServerId, TenantId, Timestamp, isUuid } from './common.js'
import { ConsoleParams, ConsoleProtocol, ConsoleResult } from './console.js'
import { PowerAction, PowerStatus } from './power.js'
import { StoredServer } from './server.js'
import { compile, type Checker } from './validate.js'

/** What every job carries, whatever its kind. `deadline` is absolute: whatever has not finished by then ends as `timed_out`. */
const JOB_COMMON = {
  id: JobId,
  serverId: ServerId,
  tenantId: TenantId,
  /** The API key id (or `bootstrap`) that asked for the job. */
  requestedBy: Type.String({ minLength: 1, maxLength: 64 }),
  idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  createdAt: Timestamp,
  deadline: Timestamp,
  attempt: Type.Integer({ minimum: 1 }),
  traceId: Type.String({ minLength: 1, maxLength: 64 }),
  /** The failed or timed-out job this one retries (`POST /v1/jobs/{id}/retry`). */
  retryOf: Type.Optional(JobId)
}

/** A job of one kind: the common members, `kind` and what that kind carries. */
function jobOf<K extends string, P extends TProperties> (kind: K, params: P, description: string) {
  return Type.Object({ ...JOB_COMMON, kind: Type.Literal(kind), ...params }, { additionalProperties: false, description })
}

/** Changes a server's power state. */
export const PowerJob = jobOf('power', { action: PowerAction }, 'a power action')
export type PowerJob = Static<typeof PowerJob>
/** Reads a server's power state. */
export const StatusJob = jobOf('status', {}, 'a power status read')
export type StatusJob = Static<typeof StatusJob>
/** Opens a console: the agent finds the target, the gateway makes the session. */
export const ConsoleJob = jobOf('console', { console: ConsoleParams }, 'a console session')
export type ConsoleJob = Static<typeof ConsoleJob>

/**
 * Every kind of job. A new kind is added in this file only: its `jobOf(...)` above and an entry here, what it ends
 * with in `JOB_RESULTS`, and its `recordOf(...)` in `JobRecord`; `Job`, `JobKind` and `JOB_KINDS` follow.
 */
const JOB_VARIANTS = [PowerJob, StatusJob, ConsoleJob] as const

/**
 * A job as published by the API and consumed by the receiver, tagged by `kind`. Secrets never travel in it.
 */
export const Job = Type.Union([...JOB_VARIANTS], { description: 'a job, by its kind' })
export type Job = Static<typeof Job>
export type JobKind = Job['kind']
export const JOB_KINDS: readonly JobKind[] = JOB_VARIANTS.map(v => v.properties.kind.const)
export const JobKind = Type.Union(JOB_KINDS.map(k => Type.Literal(k)))
/** The job of one kind. */
export type JobOf<K extends JobKind> = Extract<Job, { kind: K }>
/** A job's own part, by kind: `kind` and what that kind carries (`action`, `console`), without the common members. */
export type JobParams = { [K in JobKind]: Omit<JobOf<K>, keyof typeof JOB_COMMON> }[JobKind]

/** `cancelled`: ended while still queued (`POST /v1/jobs/{id}/cancel`); the receiver never dispatches it. */
export const JOB_STATES = ['queued', 'dispatched', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled'] as const
export const JobState = Type.Union(JOB_STATES.map(s => Type.Literal(s)))
export type JobState = typeof JOB_STATES[number]
export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'timed_out', 'cancelled'])
export function isTerminal (s: JobState): boolean { return TERMINAL_STATES.has(s) }

export const ErrorCodeSchema = Type.Union(ERROR_CODES.map(c => Type.Literal(c)))

/** Why a job failed, and whether asking again can help. */
export const JobFailure = Type.Object({
  code: ErrorCodeSchema,
  message: Type.String({ maxLength: 1000 }),
  retryable: Type.Boolean()
}, { additionalProperties: false })
export type JobFailure = Static<typeof JobFailure>

/**
 * What a finished job of each kind returns: a power state (power: the state confirmed after the action;
 * status) or a console session (console). A record's `result` is typed by its `kind`.
 */
export const JOB_RESULTS = {
  power: PowerStatus,
  status: PowerStatus,
  console: ConsoleResult
} satisfies Record<JobKind, TSchema>

const resultChecks: Partial<Record<JobKind, Checker<TSchema>>> = {}
for (const k of JOB_KINDS) resultChecks[k] = compile<TSchema>(JOB_RESULTS[k], `${k} job's result`)

/** Why `result` is not what a job of `kind` ends with (`JOB_RESULTS`); undefined when it is. */
export function resultProblem (kind: JobKind, result: unknown): string | undefined {
  const c = resultChecks[kind]
  return c === undefined || c.check(result) ? undefined : c.explain(result)
}

/** The kinds of job whose result `result` can be (`JOB_RESULTS`); none when it is no job's result. */
export function resultKinds (result: unknown): JobKind[] {
  return JOB_KINDS.filter(k => resultChecks[k]?.check(result) === true)
}

/** Any job's result; a record's `kind` says which (see `JobRecord`). */
export const JobResult = Type.Union([PowerStatus, ConsoleResult])
export type JobResult = Static<typeof JobResult>

const JOB_HISTORY = Type.Array(Type.Object({ state: JobState, at: Timestamp }, { additionalProperties: false }))

/** A job's record of one kind: what every record holds, `kind`, what the kind shows of its job, and its result. */
function recordOf<K extends JobKind, P extends TProperties> (kind: K, params: P) {
  return Type.Object({
    id: JobId,
    kind: Type.Literal(kind),
    serverId: ServerId,
    tenantId: TenantId,
    ...params,
    requestedBy: Type.String(),
    state: JobState,
    createdAt: Timestamp,
    updatedAt: Timestamp,
    deadline: Timestamp,
    history: JOB_HISTORY,
    result: Type.Optional(JOB_RESULTS[kind] as (typeof JOB_RESULTS)[K]),
    error: Type.Optional(JobFailure),
    retryOf: Type.Optional(JobId)
  }, { additionalProperties: false })
}

export const PowerJobRecord = recordOf('power', { action: PowerAction })
export const StatusJobRecord = recordOf('status', {})
export const ConsoleJobRecord = recordOf('console', { protocol: ConsoleProtocol })

/** A job with its state and history, as stored in Redis and shown by `GET /v1/jobs/{id}`, tagged by `kind`. */
export const JobRecord = Type.Union([PowerJobRecord, StatusJobRecord, ConsoleJobRecord], { description: 'a job with its state and history' })
export type JobRecord = Static<typeof JobRecord>

/** receiver → `agent.<type>`: the job, and the server record with its secrets still sealed. */
export const AgentRequest = Type.Object({
  job: Job,
  server: StoredServer
}, { additionalProperties: false })
export type AgentRequest = Static<typeof AgentRequest>

/** agents and gateway → receiver: a job's progress or outcome. */
export const JobUpdate = Type.Object({
  jobId: JobId,
  state: Type.Union([Type.Literal('running'), Type.Literal('succeeded'), Type.Literal('failed')]),
  at: Timestamp,
  result: Type.Optional(JobResult),
  error: Type.Optional(JobFailure),
  /**
   * With an end: when the job started running. The receiver records `running` at this time and the end in one
   * step. Status and console jobs report so (they last milliseconds: a separate `running` update would be a
   * fifth of their messages); power jobs report `running` on its own, when their action starts.
   */
  startedAt: Type.Optional(Timestamp)
}, { additionalProperties: false })
export type JobUpdate = Static<typeof JobUpdate>

/** agent → gateway (`console.mint`): a console target, sealed, for the gateway to make a session of. */
export const ConsoleMintRequest = Type.Object({
  job: ConsoleJob,
  server: Type.Object({ id: ServerId, tenantId: TenantId, name: Type.String() }, { additionalProperties: false }),
  /** A `ConsoleTarget` sealed with the console transit key (CONSOLE_TRANSIT_KEY), bound to the job id. */
  target: Sealed,
  /** When the agent started the job: the gateway's final JobUpdate carries it (`JobUpdate.startedAt`). */
  startedAt: Type.Optional(Timestamp)
}, { additionalProperties: false })
export type ConsoleMintRequest = Static<typeof ConsoleMintRequest>

/** Published on the job-events channel at every state change (the API's `?wait=` and SSE feed on it). */
export const JobEvent = Type.Object({
  jobId: JobId,
  tenantId: TenantId,
  serverId: ServerId,
  kind: JobKind,
  state: JobState,
  at: Timestamp
}, { additionalProperties: false })
export type JobEvent = Static<typeof JobEvent>

/** A tenant; a suspended one's keys are refused and its consoles closed until it is resumed. */
export const Tenant = Type.Object({
  id: TenantId,
  name: Type.String({ minLength: 1, maxLength: 200 }),
  createdAt: Timestamp,
  suspended: Type.Optional(Type.Boolean({ description: 'true while suspended (records written before suspension existed have none)' })),
  suspendedAt: Type.Optional(Timestamp)
}, { additionalProperties: false })
export type Tenant = Static<typeof Tenant>

/** An API key as stored (by the SHA-256 of the key) and shown; the key itself is shown once at creation. */
export const ApiKey = Type.Object({
  id: Id,
  name: Type.String({ minLength: 1, maxLength: 200 }),
  role: Role,
  tenantId: Type.Optional(TenantId),
  createdAt: Timestamp
}, { additionalProperties: false })
export type ApiKey = Static<typeof ApiKey>

/** One line of the append-only audit log. */
export const AuditEntry = Type.Object({
  at: Timestamp,
  actor: Type.String(),
  role: Type.String(),
  tenantId: Type.Optional(Type.String()),
  action: Type.String(),
  serverId: Type.Optional(Type.String()),
  jobId: Type.Optional(Type.String()),
  sessionId: Type.Optional(Type.String()),
  ip: Type.Optional(Type.String()),
  result: Type.String()
}, { additionalProperties: false })
export type AuditEntry = Static<typeof AuditEntry>

/**
 * The job a message is about, when it names one by a well-formed id: a Job (`id`), or a message holding one
 * (`job.id`: AgentRequest, ConsoleMintRequest). For messages that failed their schema (poison, dead letters).
 */
export function jobIdOf (body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const b = body as { id?: unknown, job?: unknown }
  const id = typeof b.job === 'object' && b.job !== null ? (b.job as { id?: unknown }).id : b.id
  return isUuid(id) ? id : undefined
}
