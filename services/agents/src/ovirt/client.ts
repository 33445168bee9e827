/**
 * A small client for the oVirt Engine REST API v4 (`<engine>/ovirt-engine/api`), JSON flavour.
 *
 * - The engine URL: `<url>` is the engine's base in its normal form (`engineUrl`), whatever form the record
 *   holds (records stored before the API normalised them may end in `/api` or a slash).
 * - Authentication: an SSO token from `POST <url>/sso/oauth/token` (password grant, scope `ovirt-app-api`),
 *   cached per engine, user and password, renewed shortly before its `exp` and once more on a 401.
 * - TLS: the engine's CA from the server record (`connection.caCert`) is the only CA trusted for that engine;
 *   without one the system CAs are used. Certificates are always verified.
 * - Errors: unreachable engine or untrusted certificate → connection; credentials refused (also a 401 that
 *   survives a fresh token) → auth; 404 → not_found; 409 (e.g. "VM is locked") → conflict; anything else → action.
 */
import { createHash } from 'node:crypto'
import https from 'node:https'
import { ovirtEngineUrl } from '@porthole/contracts'
import { ActionError, AuthError, ConflictError, ConnectionError, NotFoundError, PortholeError, TimeoutError, ValidationError } from '@porthole/contracts/errors'

/** The engine's base URL in its normal form (`https://engine.example/ovirt-engine`), from a record's `connection.url`. */
export function engineUrl (raw: unknown): string {
  if (typeof raw !== 'string') throw new ValidationError('connection.url: the ovirt connection needs the engine URL', 'connection.url')
  const engine = ovirtEngineUrl(raw)
  if ('problem' in engine) throw new ValidationError(`connection.url: ${engine.problem}`, 'connection.url')
  return engine.url
}

export interface Engine {
  /** Base URL of the engine in its normal form (`engineUrl`), e.g. `https://engine.example/ovirt-engine`. */
  url: string
  username: string
  password: string
  caCert?: string | undefined
}

interface Token { value: string, expiresAt: number, issuedAt: number }

export interface ApiResponse { status: number, body: unknown }

/** Renew a token this long before the engine says it expires (at most a tenth of its lifetime). */
const EXPIRY_SKEW_MS = 10_000
/** TLS and socket errors that no retry will cure. */
const TLS_TRUST = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS|HOSTNAME|ALTNAME/

export class OvirtClient {
  private readonly agents = new Map<string, https.Agent>()
  private readonly tokens = new Map<string, Token>()
  private readonly pending = new Map<string, Promise<Token>>()

  /** Calls the API (`path` below `<url>/api`), with a token, renewing it once on a 401. */
  async api (e: Engine, method: 'GET' | 'POST', path: string, body: unknown, signal: AbortSignal): Promise<ApiResponse> {
    let token = await this.token(e, signal)
    let r = await this.send(e, method, `${e.url}/api${path}`, apiHeaders(token.value, body), body === undefined ? undefined : JSON.stringify(body), signal)
    if (r.status === 401) {
      // Expired early, revoked, or the engine restarted: one fresh token, then it is the credentials.
      this.forget(e, token)
      token = await this.token(e, signal)
      r = await this.send(e, method, `${e.url}/api${path}`, apiHeaders(token.value, body), body === undefined ? undefined : JSON.stringify(body), signal)
      if (r.status === 401) {
        this.forget(e, token)
        throw new AuthError(`oVirt engine ${host(e)} refused the credentials of ${e.username}`)
      }
    }
    return r
  }

  /** Turns an error status into the error class the caller must decide on. `what` names the resource for 404. */
  static fail (e: Engine, r: ApiResponse, what: string): PortholeError {
    const text = faultText(r.body)
    switch (r.status) {
      case 403: return new AuthError(`oVirt engine ${host(e)}: ${e.username} may not do this${text === '' ? '' : `: ${text}`}`)
      case 404: return new NotFoundError(what)
      case 409: return new ConflictError(`oVirt engine ${host(e)}: ${text === '' ? 'conflict' : text}`)
      default: return new ActionError(`oVirt engine ${host(e)} answered ${r.status}${text === '' ? '' : `: ${text}`}`, { retryable: r.status >= 502 && r.status <= 504 })
    }
  }

  async close (): Promise<void> {
    for (const a of this.agents.values()) a.destroy()
    this.agents.clear()
    this.tokens.clear()
  }

  private key (e: Engine): string {
    // The password is part of the key (hashed) so that changed credentials take effect at once.
    return `${e.url}\n${e.username}\n${createHash('sha256').update(e.password).digest('hex')}`
  }

  private forget (e: Engine, t: Token): void {
    const k = this.key(e)
    if (this.tokens.get(k) === t) this.tokens.delete(k)
  }

  private async token (e: Engine, signal: AbortSignal): Promise<Token> {
    const k = this.key(e)
    const t = this.tokens.get(k)
    if (t !== undefined && t.expiresAt - Math.min(EXPIRY_SKEW_MS, (t.expiresAt - t.issuedAt) / 10) > Date.now()) return t
    let p = this.pending.get(k)
    if (p === undefined) {
      p = this.login(e, signal).finally(() => this.pending.delete(k))
      this.pending.set(k, p)
    }
    const fresh = await p
    this.tokens.set(k, fresh)
    return fresh
  }

  private async login (e: Engine, signal: AbortSignal): Promise<Token> {
    const form = new URLSearchParams({ grant_type: 'password', scope: 'ovirt-app-api', username: e.username, password: e.password }).toString()
    const r = await this.send(e, 'POST', `${e.url}/sso/oauth/token`, {
      accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded'
    }, form, signal)
    const b = (r.body ?? {}) as Record<string, unknown>
    if (r.status === 200 && typeof b.access_token === 'string' && b.access_token !== '') {
      return { value: b.access_token, expiresAt: expiryOf(b), issuedAt: Date.now() }
    }
    if (r.status === 400 || r.status === 401 || r.status === 403) {
      // e.g. {"error_code":"access_denied","error":"Cannot authenticate user 'x@internal': ..."}
      throw new AuthError(`oVirt engine ${host(e)} refused the credentials of ${e.username}`)
    }
    if (r.status === 404) throw new ConnectionError(`no oVirt SSO service at ${host(e)} (check the engine URL, which ends in /ovirt-engine)`)
    throw new ActionError(`oVirt engine ${host(e)} SSO answered ${r.status}`, { retryable: r.status >= 500 })
  }

  private agentFor (e: Engine): https.Agent {
    const k = `${new URL(e.url).host}\n${e.caCert === undefined ? '' : createHash('sha256').update(e.caCert).digest('hex')}`
    let a = this.agents.get(k)
    if (a === undefined) {
      a = new https.Agent({ keepAlive: true, maxSockets: 8, ...(e.caCert === undefined ? {} : { ca: e.caCert }) })
      this.agents.set(k, a)
    }
    return a
  }

  private async send (e: Engine, method: string, url: string, headers: Record<string, string>, body: string | undefined, signal: AbortSignal): Promise<ApiResponse> {
    if (signal.aborted) throw new TimeoutError(`no answer from oVirt engine ${host(e)} by the job's deadline`)
    const u = new URL(url)
    // The password goes to the engine: never over plain HTTP, whatever a record says (the schema says https too).
    if (u.protocol !== 'https:') throw new ValidationError('connection.url: https only: the password goes to the engine', 'connection.url')
    return await new Promise<ApiResponse>((resolve, reject) => {
      const req = https.request(u, {
        method,
        agent: this.agentFor(e),
        headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        signal
      }, (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (c: Buffer) => { size += c.length; if (size <= 4 * 1024 * 1024) chunks.push(c) })
        res.on('error', (err) => reject(transportError(e, err, signal)))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let parsed: unknown
          if (text.trim() !== '') {
            try { parsed = JSON.parse(text) } catch { parsed = undefined }
          }
          resolve({ status: res.statusCode ?? 0, body: parsed })
        })
      })
      req.on('error', (err) => reject(transportError(e, err, signal)))
      req.end(body)
    })
  }
}

function apiHeaders (token: string, body: unknown): Record<string, string> {
  const h: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${token}` }
  if (body !== undefined) h['content-type'] = 'application/json'
  return h
}

function host (e: Engine): string {
  try { return new URL(e.url).host } catch { return 'engine' }
}

function transportError (e: Engine, err: NodeJS.ErrnoException, signal: AbortSignal): PortholeError {
  if (signal.aborted || err.name === 'AbortError') return new TimeoutError(`no answer from oVirt engine ${host(e)} by the job's deadline`)
  const code = err.code ?? ''
  if (TLS_TRUST.test(code)) {
    // Retrying cannot make an untrusted certificate trusted: the record's caCert must change.
    return new PortholeError('connection', `TLS with oVirt engine ${host(e)} failed: ${code} (is connection.caCert the engine's CA?)`, { retryable: false, cause: err })
  }
  return new ConnectionError(`oVirt engine ${host(e)} unreachable${code === '' ? '' : `: ${code}`}`, err)
}

/**
 * When the token expires. The engine's `exp` is a string of milliseconds since the epoch (a JSON quirk: numbers
 * travel as strings); seconds and `expires_in` are accepted too. Without either, the token lives until a 401.
 */
function expiryOf (b: Record<string, unknown>): number {
  const exp = Number(b.exp)
  if (Number.isFinite(exp) && exp > 0) {
    const ms = exp > 1e11 ? exp : exp * 1000
    return Math.min(ms, Number.MAX_SAFE_INTEGER)
  }
  const inS = Number(b.expires_in)
  if (Number.isFinite(inS) && inS > 0) return Date.now() + inS * 1000
  return Number.MAX_SAFE_INTEGER
}

/** The engine's fault (`{reason, detail}`, possibly wrapped in `fault`) as one short line. */
export function faultText (body: unknown): string {
  if (body === null || typeof body !== 'object') return ''
  const o = body as Record<string, unknown>
  const f = (typeof o.fault === 'object' && o.fault !== null ? o.fault : o) as Record<string, unknown>
  const detail = typeof f.detail === 'string' ? f.detail.replace(/^\[|\]$/g, '').trim() : ''
  const reason = typeof f.reason === 'string' ? f.reason.trim() : ''
  return (detail !== '' ? detail : reason).slice(0, 300)
}
