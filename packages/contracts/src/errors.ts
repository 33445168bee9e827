/**
 * Errors that carry what the caller must decide on: a stable `code`, whether a retry can help, and the HTTP
 * status the API answers with. Expected outcomes (a VM already off) are return values, not errors.
 */

/** Every failure code a job, an agent or the API can report. Stable: clients branch on these. */
export const ERROR_CODES = [
  'invalid', // the request or message is malformed
  'unauthorized', // no or unknown API key
  'forbidden', // the key's role does not allow this
  'not_found', // the server, domain, VM or job does not exist (or belongs to another tenant)
  'conflict', // the target's state does not allow the action (e.g. console of a VM that is off)
  'unsupported', // the agent type cannot do this action
  'connection', // the hypervisor, BMC or engine could not be reached
  'auth', // the hypervisor, BMC or engine refused the credentials
  'action', // the target was reached but the action failed
  'timeout', // no answer by the deadline
  'busy', // rate limit or another job holds the server
  'unavailable', // a dependency of ours (broker, Redis) is down
  'poison', // a message that can never be processed
  'internal' // a bug of ours
] as const
export type ErrorCode = typeof ERROR_CODES[number]

const DEFAULT_STATUS: Record<ErrorCode, number> = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  unsupported: 422,
  connection: 502,
  auth: 502,
  action: 502,
  timeout: 504,
  busy: 429,
  unavailable: 503,
  poison: 400,
  internal: 500
}

/** Retrying can help for these codes unless an error says otherwise. */
const DEFAULT_RETRYABLE: ReadonlySet<ErrorCode> = new Set(['connection', 'timeout', 'busy', 'unavailable'])

export interface PortholeErrorOptions {
  retryable?: boolean
  status?: number
  cause?: unknown
  /** Extra members for the problem+json body (e.g. the offending field). Never secrets. */
  details?: Record<string, unknown>
}

/** The base of every error Porthole raises on purpose. */
export class PortholeError extends Error {
  readonly retryable: boolean
  readonly status: number
  readonly details: Record<string, unknown> | undefined

  constructor (readonly code: ErrorCode, message: string, opts: PortholeErrorOptions = {}) {
    super(message, { cause: opts.cause })
    this.name = new.target.name
    this.retryable = opts.retryable ?? DEFAULT_RETRYABLE.has(code)
    this.status = opts.status ?? DEFAULT_STATUS[code]
    this.details = opts.details
  }

  /** The failure as recorded on a job. */
  toFailure (): JobFailureLike {
    return { code: this.code, message: this.message, retryable: this.retryable }
  }
}

/** Shape of a job failure (the schema lives in contracts). */
export interface JobFailureLike { code: ErrorCode, message: string, retryable: boolean }

export class ValidationError extends PortholeError {
  constructor (message: string, field?: string) {
    super('invalid', message, { details: field === undefined ? undefined : { field } })
  }
}
export class NotFoundError extends PortholeError {
  constructor (what: string) { super('not_found', `${what} not found`) }
}
export class ConflictError extends PortholeError {
  constructor (message: string) { super('conflict', message) }
}
export class UnsupportedError extends PortholeError {
  constructor (message: string) { super('unsupported', message) }
}
export class ConnectionError extends PortholeError {
  constructor (message: string, cause?: unknown) { super('connection', message, { cause }) }
}
export class AuthError extends PortholeError {
  constructor (message: string, cause?: unknown) { super('auth', message, { cause }) }
}
export class ActionError extends PortholeError {
  constructor (message: string, opts: { cause?: unknown, retryable?: boolean } = {}) { super('action', message, opts) }
}
export class TimeoutError extends PortholeError {
  constructor (message: string, cause?: unknown) { super('timeout', message, { cause }) }
}
/** The broker or Redis is not reachable right now; the API answers 503 at once. */
export class UnavailableError extends PortholeError {
  constructor (message: string, cause?: unknown) { super('unavailable', message, { cause }) }
}

/** Turns anything thrown into a job failure without leaking stack traces or secrets. */
export function toFailure (err: unknown): JobFailureLike {
  if (err instanceof PortholeError) return err.toFailure()
  return { code: 'internal', message: 'internal error', retryable: false }
}
