/**
 * RFC 9457 problem details: every error the API answers with, its own and fastify's, becomes
 * `application/problem+json` with `type`, `title`, `status`, `detail` (and `code`, plus members such as
 * `field` or `jobId`). Never a stack trace, never a secret.
 */
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from '@fastify/type-provider-typebox'
import { PortholeError, type ErrorCode } from '@porthole/contracts/errors'
import type { JobFailure } from '@porthole/contracts'
import { brief } from '@porthole/shared/logging'
import { failureView } from './views.js'

export const PROBLEM_TYPE_BASE = 'urn:porthole:problem:'

export const Problem = Type.Object({
  type: Type.String({ description: 'a URI naming the kind of problem: urn:porthole:problem:<code>' }),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  code: Type.String({ description: 'stable error code clients can branch on' }),
  instance: Type.Optional(Type.String()),
  requestId: Type.Optional(Type.String()),
  field: Type.Optional(Type.String({ description: 'the offending request field, e.g. connection.host' })),
  jobId: Type.Optional(Type.String())
}, { additionalProperties: true, $id: 'Problem', description: 'RFC 9457 problem details' })

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout'
}

const CODE_FOR_STATUS: Record<number, ErrorCode> = {
  400: 'invalid', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 409: 'conflict', 422: 'unsupported',
  429: 'busy', 502: 'connection', 503: 'unavailable', 504: 'timeout'
}

export interface ProblemBody {
  type: string
  title: string
  status: number
  detail: string
  code: string
  [k: string]: unknown
}

export function problem (status: number, code: string, detail: string, extra: Record<string, unknown> = {}): ProblemBody {
  return { type: PROBLEM_TYPE_BASE + code, title: TITLES[status] ?? 'Error', status, detail, code, ...extra }
}

/**
 * A failed job as an error. It keeps the job's failure so that `toProblem` shows each caller only what it
 * may see of it (`failureView`: customers get a fixed sentence per code, not the agent's message).
 */
export class JobFailedError extends PortholeError {
  constructor (readonly jobId: string, readonly failure: JobFailure) {
    super(failure.code, failure.message, { retryable: failure.retryable, details: { jobId, retryable: failure.retryable } })
  }
}

/** The problem a failed or timed-out job maps to (for console and status requests, which wait for a result). */
export function jobFailureError (jobId: string, state: string, error: JobFailure | undefined): PortholeError {
  if (error === undefined) {
    if (state === 'cancelled') return new PortholeError('conflict', 'the job was cancelled before it was dispatched', { details: { jobId } })
    return state === 'timed_out'
      ? new PortholeError('timeout', 'the job did not finish by its deadline', { details: { jobId } })
      : new PortholeError('internal', 'the job failed', { details: { jobId } })
  }
  return new JobFailedError(jobId, error)
}

/** True for ioredis errors meaning "Redis is not reachable right now". */
function isRedisDown (err: unknown): boolean {
  const e = err as { name?: string, message?: string }
  return e?.name === 'MaxRetriesPerRequestError' || /Connection is closed|Stream isn't writeable|ECONNREFUSED/.test(e?.message ?? '')
}

/** Turns anything thrown in a request into a problem body; logs what the client must not see. */
export function toProblem (err: unknown, req: FastifyRequest): ProblemBody {
  const extra: Record<string, unknown> = { requestId: req.id }
  if (err instanceof PortholeError) {
    if (err.status >= 500) req.log.warn({ err: { message: err.message, code: err.code } }, 'request failed')
    const detail = err instanceof JobFailedError ? failureView(req.principal, err.failure).message : err.message
    return problem(err.status, err.code, detail, { ...extra, ...(err.details ?? {}) })
  }
  const fe = err as FastifyError & { validation?: Array<{ instancePath?: string, message?: string, params?: Record<string, unknown> }>, validationContext?: string }
  if (Array.isArray(fe.validation)) {
    const first = fe.validation[0]
    const path = (first?.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.')
    const where = fe.validationContext ?? 'body'
    const field = path === '' ? where : path
    return problem(400, 'invalid', `${where === 'body' ? '' : where + ' '}${field}: ${first?.message ?? 'invalid'}`, { ...extra, field })
  }
  if (isRedisDown(err)) {
    req.log.warn({ err: { message: (err as Error).message } }, 'redis unavailable')
    return problem(503, 'unavailable', 'the job store is unavailable; try again shortly', extra)
  }
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500
  if (status >= 400 && status < 500) {
    // fastify's own client errors (malformed JSON, body too large, media type): their messages are safe.
    const code = CODE_FOR_STATUS[status] ?? 'invalid'
    return problem(status, code, fe.message, { ...extra, ...(fe.code === undefined ? {} : { fastifyCode: fe.code }) })
  }
  // Its stack helps; a URL with a password in a message or stack (a driver's connection string) must not reach the log.
  req.log.error({ err: { ...brief(err), stack: String((err as Error | undefined)?.stack ?? '').replace(/\/\/[^@/\s]*@/g, '//***@') } }, 'unhandled error')
  return problem(500, 'internal', 'internal error', extra)
}

/**
 * Answers what node's HTTP parser refused before fastify saw a request (headers past the size limit, a
 * malformed request line, a request that took too long) with a problem, and closes the connection.
 */
export function clientError (err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, detail] = err.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'the request headers are too large']
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'the request was not received in time'] : [400, 'malformed HTTP request']
  const body = JSON.stringify(problem(status, status === 408 ? 'timeout' : 'invalid', detail))
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${TITLES[status] ?? 'Error'}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}

export function sendProblem (reply: FastifyReply, p: ProblemBody): FastifyReply {
  if (p.status === 401) reply.header('www-authenticate', 'Bearer')
  // A 503 that knows when to come back (an empty kiosk pool) says so; any other, 5 s.
  if (p.status === 503) reply.header('retry-after', String(typeof p.retryAfter === 'number' ? p.retryAfter : 5))
  // Limits and quotas say when to come back (limits.ts); @fastify/rate-limit has set it already for its own.
  if (p.status === 429 && typeof p.retryAfter === 'number') reply.header('retry-after', String(p.retryAfter))
  return reply.code(p.status).type('application/problem+json').send(JSON.stringify(p))
}
