/**
 * Session admission: whether a viewer's token opens the session it asks for. A viewer is authenticated by
 * the token it presents in `Sec-WebSocket-Protocol` (`porthole.token.<token>`) or, for the page's look-ups,
 * in `Authorization: Bearer`, never by anything in the URL. Only the token's SHA-256 is stored.
 */
import type { ConsoleSession, ConsoleShareRecord } from '@porthole/contracts'
import { safeEqual, sha256Hex } from '@porthole/shared/crypto'
import type { ConsoleSessionStore, ConsoleShareStore } from '@porthole/shared/store'

/** Where admission reads sessions and their shares. */
export interface Stores { sessions: ConsoleSessionStore, shares: ConsoleShareStore }

/** The subprotocol prefix that carries the token. */
export const TOKEN_PROTOCOL = 'porthole.token.'
/** The subprotocol prefix (and, for look-ups, the header) that carries the page's resume secret (see boot.js). */
export const RESUME_PROTOCOL = 'porthole.resume.'
export const RESUME_HEADER = 'x-console-resume'
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{22,128}$/

/**
 * `resumed`: a used single-use session, opened again by the viewer that used it (its resume secret).
 * `share`: the token is a share's (a second URL for the session's screen), not the session's own.
 */
export type TokenCheck = { ok: true, session: ConsoleSession, resumed: boolean, share?: ConsoleShareRecord } | { ok: false, reason: 'invalid' | 'expired' | 'revoked' | 'used' }

/** The SHA-256 of a well-formed resume secret, else undefined. */
export function resumeHashOf (resume: string | undefined): string | undefined {
  return resume !== undefined && TOKEN_SHAPE.test(resume) ? sha256Hex(resume) : undefined
}

/**
 * Whether `token` opens session `sessionId`. A token of another session, or none that is known, is
 * `invalid`; the reasons `expired` and `revoked` are only told to the holder of the session's own token.
 * `used` is for the console page's look-up; at connect, single use is claimed atomically instead. A used
 * single-use session opens again for the viewer that used it, by its resume secret, within the grace.
 */
export async function checkToken ({ sessions, shares }: Stores, sessionId: string, token: string | undefined, resume?: string): Promise<TokenCheck> {
  if (token === undefined || !TOKEN_SHAPE.test(token)) return { ok: false, reason: 'invalid' }
  const hash = sha256Hex(token)
  const [live, share] = await Promise.all([sessions.findByTokenHash(hash), shares.findByTokenHash(hash)])
  if (share !== undefined) return await checkShare(sessions, sessionId, share)
  if (live !== undefined) {
    if (live.id !== sessionId) return { ok: false, reason: 'invalid' }
    if (live.singleUse && live.usedAt !== undefined) {
      const hash = resumeHashOf(resume)
      if (hash !== undefined && live.resumeHash !== undefined && safeEqual(hash, live.resumeHash) && await sessions.mayResume(live.id)) return { ok: true, session: live, resumed: true }
      return { ok: false, reason: 'used' }
    }
    return { ok: true, session: live, resumed: false }
  }
  const known = await sessions.get(sessionId)
  if (known === undefined || !safeEqual(known.tokenHash, hash)) return { ok: false, reason: 'invalid' }
  if (known.revokedAt !== undefined) return { ok: false, reason: 'revoked' }
  if (Date.parse(known.expiresAt) <= Date.now()) return { ok: false, reason: 'expired' }
  return { ok: false, reason: 'invalid' }
}

/** A share's token opens its session while the session is live: revoking the session ends every share. */
async function checkShare (sessions: ConsoleSessionStore, sessionId: string, share: ConsoleShareRecord): Promise<TokenCheck> {
  if (share.sessionId !== sessionId) return { ok: false, reason: 'invalid' }
  const s = await sessions.get(sessionId)
  if (s === undefined) return { ok: false, reason: 'invalid' }
  if (s.revokedAt !== undefined) return { ok: false, reason: 'revoked' }
  if (Date.parse(s.expiresAt) <= Date.now()) return { ok: false, reason: 'expired' }
  return { ok: true, session: s, resumed: false, share }
}

/** The token (or, with RESUME_PROTOCOL, the resume secret) a viewer offered in Sec-WebSocket-Protocol, if any. */
export function tokenFromProtocols (header: string | undefined, prefix = TOKEN_PROTOCOL): string | undefined {
  if (header === undefined) return undefined
  for (const p of header.split(',')) {
    const s = p.trim()
    if (s.startsWith(prefix)) return s.slice(prefix.length)
  }
  return undefined
}
