/** The API over HTTP: bearer key, JSON bodies, problem+json turned into CliErrors with the exit code to use. */
import { CliError, EXIT, exitForStatus } from './exit.js'

export interface Reply<T> { status: number, headers: Headers, body: T }

interface ProblemLike { title?: unknown, detail?: unknown, code?: unknown, status?: unknown }

export class Client {
  constructor (readonly baseUrl: string, private readonly key: string | undefined) {}

  /** Sends one request; any answer but 2xx throws a CliError carrying the problem's detail. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- every route answers its own shape
  async call<T = any> (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
    const res = await this.fetch(path, { method, headers: this.headers(body === undefined ? headers : { ...headers, 'content-type': 'application/json' }), ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    const text = await res.text()
    let parsed: unknown
    try { parsed = text === '' ? undefined : JSON.parse(text) } catch { parsed = text }
    if (!res.ok) throw new CliError(exitForStatus(res.status), describe(res.status, parsed), parsed)
    return { status: res.status, headers: res.headers, body: parsed as T }
  }

  /** Opens a response whose body the caller reads as a stream (server-sent events). */
  async stream (path: string, signal: AbortSignal): Promise<Response> {
    const res = await this.fetch(path, { method: 'GET', headers: this.headers({ accept: 'text/event-stream' }), signal })
    if (!res.ok) {
      const text = await res.text().catch(() => '')
      let parsed: unknown = text
      try { parsed = JSON.parse(text) } catch { /* not JSON */ }
      throw new CliError(exitForStatus(res.status), describe(res.status, parsed), parsed)
    }
    return res
  }

  private headers (extra: Record<string, string>): Record<string, string> {
    return this.key === undefined ? { ...extra } : { ...extra, authorization: `Bearer ${this.key}` }
  }

  private async fetch (path: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(new URL(path, this.baseUrl), init)
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err
      const cause = (err as { cause?: { code?: string, message?: string } }).cause
      throw new CliError(EXIT.unreachable, `cannot reach the Porthole API at ${this.baseUrl}: ${cause?.code ?? cause?.message ?? (err as Error).message}`)
    }
  }
}

function describe (status: number, body: unknown): string {
  const p = (typeof body === 'object' && body !== null ? body : {}) as ProblemLike
  const detail = typeof p.detail === 'string' ? p.detail : typeof body === 'string' && body !== '' ? body.slice(0, 300) : `HTTP ${status}`
  return `${status} ${typeof p.title === 'string' ? p.title : ''}${typeof p.title === 'string' ? ': ' : ''}${detail}`
}

/** A 404 for the route itself (not for an item): this API has no such feature yet. */
export function isMissingRoute (err: unknown): boolean {
  if (!(err instanceof CliError) || err.exitCode !== EXIT.notFound) return false
  const b = err.body as ProblemLike | undefined
  return typeof b?.detail === 'string' && b.detail.startsWith('no route ')
}
