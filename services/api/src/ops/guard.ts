/**
 * How the dashboard's requests are trusted. Reads: a live session cookie. Changes (POST, DELETE): the
 * session cookie (SameSite=Strict, so another site's page never sends it), and an `Origin` header naming
 * this API's own origin, and the session's CSRF token in `X-CSRF-Token` (the page reads it from
 * `GET /ops/api/session`, which another origin cannot read). The login itself, which has no session yet, is
 * held to the Origin check.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { safeEqual } from '@porthole/shared/crypto'
import { PortholeError } from '@porthole/contracts/errors'
import type { Principal } from '../auth.js'
import type { LiveOpsSession, OpsSessions } from './sessions.js'

export const COOKIE = 'porthole_ops'
export const COOKIE_PATH = '/ops'

/** Served with every /ops answer: the page loads only its own scripts and styles and talks only to this origin. */
export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

export function securityHeaders (reply: FastifyReply): void {
  reply.header('content-security-policy', CSP)
  reply.header('x-content-type-options', 'nosniff')
  reply.header('referrer-policy', 'no-referrer')
  reply.header('x-frame-options', 'DENY')
  reply.header('cache-control', 'no-store')
}

export function cookieOf (req: FastifyRequest): string | undefined {
  const header = req.headers.cookie
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const i = part.indexOf('=')
    if (i > 0 && part.slice(0, i).trim() === COOKIE) return part.slice(i + 1).trim()
  }
  return undefined
}

/** The Set-Cookie value for a session token (Secure when the request came over https, also behind a trusted proxy). */
export function sessionCookie (req: FastifyRequest, token: string, maxAgeSeconds: number): string {
  return `${COOKIE}=${token}; Path=${COOKIE_PATH}; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${req.protocol === 'https' ? '; Secure' : ''}`
}

export function clearedCookie (req: FastifyRequest): string {
  return `${COOKIE}=; Path=${COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict${req.protocol === 'https' ? '; Secure' : ''}`
}

/** 403 unless the request's Origin is this API's own (scheme, host and port as the browser used them). */
export function assertSameOrigin (req: FastifyRequest): void {
  const origin = req.headers.origin
  const own = `${req.protocol}://${req.host}`
  if (origin !== own) throw new PortholeError('forbidden', origin === undefined ? 'a dashboard change needs an Origin header naming this API' : `cross-origin request refused (Origin ${origin.slice(0, 100)})`)
}

declare module 'fastify' {
  interface FastifyRequest { opsSession?: LiveOpsSession }
}

/** The request's dashboard session, checked as described above; 401 without one. */
export async function opsPrincipal (sessions: OpsSessions, req: FastifyRequest): Promise<Principal> {
  const s = await sessions.get(cookieOf(req))
  if (s === undefined) throw new PortholeError('unauthorized', 'log in to the dashboard first (POST /ops/login with an operator or admin key)')
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    assertSameOrigin(req)
    const token = req.headers['x-csrf-token']
    if (typeof token !== 'string' || !safeEqual(token, s.csrf)) throw new PortholeError('forbidden', 'missing or wrong X-CSRF-Token for this dashboard session')
  }
  req.opsSession = s
  return { id: s.keyId, role: s.role }
}
