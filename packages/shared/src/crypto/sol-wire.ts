/**
 * The serial-over-LAN bridge's wire protocol (docs/messages.md, "Serial-over-LAN bridge"), both sides of it: the
 * console gateway's hello and the agent bridge's answers. One line each, then raw serial bytes both ways.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { isUuid } from '@porthole/contracts'

/**
 * The serial-over-LAN bridge's hello (docs/messages.md): the console gateway's first line to an agent's bridge,
 * `PORTHOLE-SOL/2 <ticket> <sessionId> <unix ms> <nonce> <mac>`, where `mac` is HMAC-SHA256 keyed with
 * SOL_BRIDGE_SECRET over the other fields. A bridge accepts it only with a valid mac and a time within
 * SOL_HELLO_SKEW_MS of its own; a ticket is good for one connection, and both sides derive its successor from
 * the secret, the ticket and the nonce (`nextSolTicket`), so the successor never travels.
 */
export const SOL_HELLO_PREFIX = 'PORTHOLE-SOL/2 '
/** How far a hello's time may be from the bridge's clock. */
export const SOL_HELLO_SKEW_MS = 30_000
/** The shape of a bridge ticket (base64url, 128 bits or more). */
export const SOL_TICKET = /^[A-Za-z0-9_-]{22,128}$/
/** The longest hello line a bridge reads before it drops the peer. */
export const SOL_MAX_HELLO = 512
const SOL_NONCE = /^[A-Za-z0-9_-]{22}$/

/** A hello's fields, once its mac checked out. */
export interface SolHello { token: string, sessionId: string, at: number, nonce: string }

function solMac (secret: Buffer, h: SolHello): Buffer {
  return createHmac('sha256', secret).update(`${SOL_HELLO_PREFIX}\n${h.token}\n${h.sessionId}\n${h.at}\n${h.nonce}`).digest()
}

/** The ticket that replaces `token` once a bridge accepted a hello with `nonce`. */
export function nextSolTicket (secret: Buffer, token: string, nonce: string): string {
  return createHmac('sha256', secret).update(`${SOL_HELLO_PREFIX}next\n${token}\n${nonce}`).digest('base64url')
}

/** The gateway's hello line (with its newline) for `token`, and the ticket that follows it. */
export function writeSolHello (secret: Buffer, token: string, sessionId: string, now = Date.now()): { line: string, next: string } {
  const h: SolHello = { token, sessionId, at: now, nonce: randomBytes(16).toString('base64url') }
  const mac = solMac(secret, h).toString('base64url')
  return { line: `${SOL_HELLO_PREFIX}${token} ${sessionId} ${h.at} ${h.nonce} ${mac}\n`, next: nextSolTicket(secret, token, h.nonce) }
}

/** The hello in `line` (without its newline) when its mac is valid and its time is near `now`; else undefined. */
export function readSolHello (secret: Buffer, line: string, now = Date.now()): SolHello | undefined {
  if (!line.startsWith(SOL_HELLO_PREFIX)) return undefined
  const f = line.slice(SOL_HELLO_PREFIX.length).split(' ')
  if (f.length !== 5) return undefined
  const [token, sessionId, at, nonce, mac] = f as [string, string, string, string, string]
  if (!SOL_TICKET.test(token) || !isUuid(sessionId) || !/^\d{1,15}$/.test(at) || !SOL_NONCE.test(nonce) || !/^[A-Za-z0-9_-]{43}$/.test(mac)) return undefined
  const h: SolHello = { token, sessionId, at: Number(at), nonce }
  const want = solMac(secret, h)
  const got = Buffer.from(mac, 'base64url')
  if (got.length !== want.length || !timingSafeEqual(got, want)) return undefined
  return Math.abs(now - h.at) <= SOL_HELLO_SKEW_MS ? h : undefined
}

/** Why a bridge refuses a connection: the ticket or its session (`invalid`), the BMC's credentials (`auth`), no SOL session (`unreachable`). */
export const SOL_REFUSALS = ['invalid', 'auth', 'unreachable'] as const
export type SolRefusal = typeof SOL_REFUSALS[number]

/** The bridge's answer lines, with their newline: the ticket is taken, the SOL session is up, or why not. */
export const SOL_ANSWER = {
  claimed: 'CLAIMED\n',
  ok: 'OK\n',
  refused: (reason: SolRefusal): string => `ERR ${reason}\n`
} as const

/** One answer line of the bridge (without its newline), read; undefined for anything else. */
export type SolAnswer = { answer: 'claimed' } | { answer: 'ok' } | { answer: 'refused', reason: string }
export function readSolAnswer (line: string): SolAnswer | undefined {
  if (line === 'CLAIMED') return { answer: 'claimed' }
  if (line === 'OK') return { answer: 'ok' }
  if (line.startsWith('ERR ')) return { answer: 'refused', reason: line.slice(4) }
  return undefined
}
