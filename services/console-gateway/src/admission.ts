/**
 * Session admission: whether a viewer's token opens the session it asks for. A viewer is authenticated by
 * the token it presents in `Sec-WebSocket-Protocol` (`porthole.token.<token>`) or, for the page's look-ups,
 * in `Authorization: Bearer`, never by anything in the URL. Only the token's SHA-256 is stored.
 */
import type { ConsoleSession } from '@porthole/shared/contracts'
import { safeEqual, sha256Hex } from '@porthole/shared/crypto'
import type { ConsoleSessionStore } from '@porthole/shared/store'

/** The subprotocol prefix that carries the token. */
export const TOKEN_PROTOCOL = 'porthole.token.'
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{22,128}$/

export type TokenCheck = { ok: true, session: ConsoleSession } | { ok: false, reason: 'invalid' | 'expired' | 'revoked' | 'used' }

/**
 * Whether `token` opens session `sessionId`. A token of another session, or none that is known, is
 * `invalid`; the reasons `expired` and `revoked` are only told to the holder of the session's own token.
 * `used` is for the console page's look-up; at connect, single use is claimed atomically instead.
 */
export async function checkToken (sessions: ConsoleSessionStore, sessionId: string, token: string | undefined): Promise<TokenCheck> {
  if (token === undefined || !TOKEN_SHAPE.test(token)) return { ok: false, reason: 'invalid' }
  const hash = sha256Hex(token)
  const live = await sessions.findByTokenHash(hash)
  if (live !== undefined) {
    if (live.id !== sessionId) return { ok: false, reason: 'invalid' }
    if (live.singleUse && live.usedAt !== undefined) return { ok: false, reason: 'used' }
    return { ok: true, session: live }
  }
  const known = await sessions.get(sessionId)
  if (known === undefined || !safeEqual(known.tokenHash, hash)) return { ok: false, reason: 'invalid' }
  if (known.revokedAt !== undefined) return { ok: false, reason: 'revoked' }
  if (Date.parse(known.expiresAt) <= Date.now()) return { ok: false, reason: 'expired' }
  return { ok: false, reason: 'invalid' }
}

/** The token a viewer offered in Sec-WebSocket-Protocol, if any. */
export function tokenFromProtocols (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  for (const p of header.split(',')) {
    const s = p.trim()
    if (s.startsWith(TOKEN_PROTOCOL)) return s.slice(TOKEN_PROTOCOL.length)
  }
  return undefined
}
