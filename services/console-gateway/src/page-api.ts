/**
 * The console page's look-ups at the gateway, by the session's token (or a share's) in `Authorization:
 * Bearer`, with the page's resume secret in `X-Console-Resume` (see admission.ts):
 * - `GET /s/<sessionId>/info`: what the page shows (server name, protocol, expiry, whether it may be renewed;
 *   for the owner, who watches through shares; for a share's viewer, its share), or why the link no longer
 *   works. With `?wait=<seconds>` (at most 25) and the `version` of the answer the page has, it answers at
 *   once if the answer changed since, else at the session's next event (a renewal, a revocation, a watcher
 *   coming or going) or after that long: the page follows a change made anywhere, and none falls between
 *   two of its look-ups.
 * - `POST /s/<sessionId>/renew`: the page's own renewal of a `renewable` session, in its last five minutes
 *   (audited as `console-session.renew` by `console-page`).
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ConsoleSession, ConsoleShareRecord } from '@porthole/contracts'
import type { Logger } from '@porthole/shared/logging'
import type { AuditLog } from '@porthole/shared/store'
import { checkToken, RESUME_HEADER, type Stores } from './admission.js'
import type { ViewerHub } from './viewers.js'

/** The longest `/info?wait=` holds a request. */
const MAX_INFO_WAIT_SECONDS = 25
/** The page may renew a renewable session in its last this many seconds. */
export const PAGE_RENEW_WINDOW_SECONDS = 300

export interface PageApiDeps extends Stores {
  hub: ViewerHub
  audit: AuditLog
  send: (res: ServerResponse, status: number, type: string, body: string, extra?: Record<string, string>) => void
  problem: (res: ServerResponse, status: number, title: string, extra?: Record<string, unknown>) => void
  clientIp: (req: IncomingMessage) => string | undefined
  log: Logger
}

export function pageApi (d: PageApiDeps): { info: (req: IncomingMessage, res: ServerResponse, sessionId: string) => Promise<void>, renew: (req: IncomingMessage, res: ServerResponse, sessionId: string) => Promise<void> } {
  const bearer = (req: IncomingMessage): string | undefined => {
    const auth = req.headers.authorization
    return auth?.startsWith('Bearer ') === true ? auth.slice(7).trim() : undefined
  }
  const resumeOf = (req: IncomingMessage): string | undefined => {
    const h = req.headers[RESUME_HEADER]
    return typeof h === 'string' ? h.trim() : undefined
  }
  const json = (res: ServerResponse, body: unknown): void => d.send(res, 200, 'application/json', JSON.stringify(body), { 'cache-control': 'no-store' })

  /**
   * What the page shows: the session, and for its owner who watches through shares; a share's viewer is
   * told its share (view-only or not) and its own expiry, which never outlasts the session's.
   */
  const pageInfo = async (s: ConsoleSession, share?: ConsoleShareRecord): Promise<Record<string, unknown>> => {
    const base = { sessionId: s.id, serverName: s.serverName, protocol: s.protocol, singleUse: s.singleUse, now: new Date().toISOString() }
    if (share !== undefined) {
      const expiresAt = Date.parse(share.expiresAt) < Date.parse(s.expiresAt) ? share.expiresAt : s.expiresAt
      return { ...base, expiresAt, renewable: false, share: { shareId: share.id, viewOnly: share.viewOnly, ...(share.label === undefined ? {} : { label: share.label }) } }
    }
    return {
      ...base, expiresAt: s.expiresAt, renewable: s.renewable === true, ...(s.maxExpiresAt === undefined ? {} : { maxExpiresAt: s.maxExpiresAt }),
      watchers: await d.shares.watchers(s.id)
    }
  }

  /** The look-up's answer, or why there is none; `version` tells one answer from the next. */
  const answer = async (req: IncomingMessage, sessionId: string): Promise<{ ok: true, body: Record<string, unknown> } | { ok: false, reason: string }> => {
    const c = await checkToken(d, sessionId, bearer(req), resumeOf(req))
    if (!c.ok) return c
    const body = await pageInfo(c.session, c.share)
    const { now: _now, ...stable } = body
    body.version = createHash('sha256').update(JSON.stringify(stable)).digest('base64url').slice(0, 16)
    return { ok: true, body }
  }

  const info = async (req: IncomingMessage, res: ServerResponse, sessionId: string): Promise<void> => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams
    const wait = Math.min(MAX_INFO_WAIT_SECONDS, Math.max(0, Number(q.get('wait') ?? 0) || 0))
    // Waiting from before the answer is read: an event while it is read still wakes this request.
    const done = new AbortController()
    res.once('close', () => done.abort())
    const next = wait > 0 ? d.hub.nextEvent(sessionId, wait * 1000, done.signal) : undefined
    let a = await answer(req, sessionId)
    if (next !== undefined && a.ok && a.body.version === q.get('version')) {
      await next
      if (res.destroyed) return
      a = await answer(req, sessionId)
    }
    done.abort()
    const c = a
    if (!c.ok) {
      // A used single-use link: its holder (the token matched) is told the protocol, so that the page whose
      // own socket used the link can start the right viewer (a serial line may send nothing to tell by).
      const used = c.reason === 'used' ? await d.sessions.get(sessionId) : undefined
      d.problem(res, c.reason === 'invalid' ? 401 : 410, 'Console link not usable', { detail: c.reason, reason: c.reason, ...(used === undefined ? {} : { protocol: used.protocol }) })
      return
    }
    json(res, c.body)
  }

  /** The page's renewal: by the session's own token, of a renewable session, in its last minutes; audited. */
  const renew = async (req: IncomingMessage, res: ServerResponse, sessionId: string): Promise<void> => {
    const c = await checkToken(d, sessionId, bearer(req), resumeOf(req))
    if (!c.ok) { d.problem(res, c.reason === 'invalid' ? 401 : 410, 'Console link not usable', { detail: c.reason, reason: c.reason }); return }
    const s = c.session
    if (s.renewable !== true || c.share !== undefined) { d.problem(res, 409, 'Not renewable here', { detail: 'this console session can only be renewed through the API', reason: 'not-renewable' }); return }
    if (Date.parse(s.expiresAt) - Date.now() > PAGE_RENEW_WINDOW_SECONDS * 1000) { d.problem(res, 409, 'Not yet', { detail: `a console session can be renewed from its page in its last ${PAGE_RENEW_WINDOW_SECONDS / 60} minutes`, reason: 'too-early' }); return }
    const r = await d.sessions.renew(s.id, s.ttlSeconds ?? PAGE_RENEW_WINDOW_SECONDS)
    const ip = d.clientIp(req)
    await d.audit.append({
      actor: 'console-page', role: 'console', action: 'console-session.renew', result: r.ok ? `ok: until ${r.session.expiresAt}` : r.reason,
      tenantId: s.tenantId, serverId: s.serverId, jobId: s.jobId, sessionId: s.id, ...(ip === undefined ? {} : { ip })
    }).catch((err: unknown) => d.log.error({ err: { message: (err as Error).message }, sessionId: s.id }, 'audit append failed'))
    if (!r.ok) { d.problem(res, r.reason === 'at-limit' ? 409 : 410, 'Not renewed', { detail: r.reason === 'at-limit' ? 'this console has reached the longest a console may live' : r.reason, reason: r.reason }); return }
    d.log.info({ sessionId: s.id, expiresAt: r.session.expiresAt }, 'console session renewed from its page')
    json(res, await pageInfo(r.session))
  }

  return { info, renew }
}
