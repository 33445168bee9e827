/**
 * Support for the security suite: the route table as the running API publishes it (`/openapi.json`), request
 * values built from each route's own schema, a console viewer that tells "accepted" (bytes of the console
 * came) from refused, and the search for secrets in log lines and in `ps` output.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { WebSocket } from 'ws'
import { Redis } from 'ioredis'
import type { ApiResponse, Stack } from '@porthole/testkit'

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON Schema as the OpenAPI document has it
export type Schema = Record<string, any>

export interface Operation {
  method: string
  /** As the document writes it: `/v1/servers/{id}`. */
  path: string
  /** `GET /v1/servers/{id}`: the key of the suite's tables. */
  key: string
  pathParams: string[]
  query: Record<string, Schema>
  headers: Record<string, Schema>
  body?: Schema
  /** Whether the document says the route needs no key (`security: []`). */
  open: boolean
  /** The schema of its 200 answer, when JSON. */
  ok?: Schema
  produces: string[]
}

/** Every operation of the running API's OpenAPI document. */
export async function operations (stack: Stack): Promise<Operation[]> {
  const r = await stack.api('GET', '/openapi.json', undefined, { key: null })
  assert.equal(r.status, 200)
  const out: Operation[] = []
  for (const [path, item] of Object.entries(r.body.paths as Record<string, Record<string, Schema>>)) {
    for (const [method, op] of Object.entries(item)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue
      const params = (op.parameters ?? []) as Array<{ in: string, name: string, schema: Schema, required?: boolean }>
      const byIn = (where: string): Record<string, Schema> => Object.fromEntries(params.filter(p => p.in === where).map(p => [p.name, { ...p.schema, 'x-required': p.required === true }]))
      const content = op.responses?.['200']?.content ?? op.responses?.['201']?.content ?? {}
      out.push({
        method: method.toUpperCase(),
        path,
        key: `${method.toUpperCase()} ${path}`,
        pathParams: params.filter(p => p.in === 'path').map(p => p.name),
        query: byIn('query'),
        headers: byIn('header'),
        ...(op.requestBody?.content?.['application/json']?.schema === undefined ? {} : { body: op.requestBody.content['application/json'].schema }),
        open: Array.isArray(op.security) && op.security.length === 0,
        ...(op.responses?.['200']?.content?.['application/json']?.schema === undefined ? {} : { ok: op.responses['200'].content['application/json'].schema }),
        produces: Object.keys(content)
      })
    }
  }
  return out
}

/** The path with its parameters filled in (each URI-encoded). */
export function fillPath (path: string, params: Record<string, string>): string {
  return path.replace(/\{([^}]+)\}/g, (_m, name: string) => {
    const v = params[name]
    if (v === undefined) throw new Error(`no value for path parameter ${name} of ${path}`)
    return encodeURIComponent(v)
  })
}

/** The first type a schema allows, null last. */
function typeOf (s: Schema): string | undefined {
  if (Array.isArray(s.type)) return s.type.find((t: string) => t !== 'null') ?? s.type[0]
  if (s.type !== undefined) return s.type as string
  if (s.properties !== undefined) return 'object'
  return undefined
}

/** A string the schema accepts: `x`s when they do, else a sample of its pattern of a length it allows. */
function minimalString (s: Schema): string {
  if (s.format === 'uuid') return randomUUID()
  if (s.format === 'date-time') return new Date().toISOString()
  const min = Math.max(1, s.minLength ?? 1)
  const max = s.maxLength ?? Math.max(min, 64)
  const plain = 'x'.repeat(min)
  if (s.pattern === undefined || new RegExp(s.pattern, 'u').test(plain)) return plain
  const re = new RegExp(s.pattern, 'u')
  const found = fc.sample(fc.stringMatching(re), { numRuns: 200, seed: 1 }).find(v => v.length >= min && v.length <= max)
  if (found === undefined) throw new Error(`no string for pattern ${s.pattern}`)
  return found
}

/**
 * The smallest value `s` accepts: required members only (more when minProperties asks), the first member of
 * an enum or union, the minimum of a number. `hints` gives values by member name (e.g. `tenantId`), so that
 * a body names the resources the test is about.
 */
export function minimalValue (s: Schema, hints: Record<string, unknown> = {}): unknown {
  if ('const' in s) return s.const
  if (Array.isArray(s.enum)) return s.enum[0]
  const union = s.anyOf ?? s.oneOf
  if (Array.isArray(union)) return minimalValue(union[0] as Schema, hints)
  if (Array.isArray(s.allOf)) return Object.assign({}, ...s.allOf.map((x: Schema) => minimalValue(x, hints)))
  switch (typeOf(s)) {
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, Schema>
      const names = [...(s.required ?? []) as string[]]
      for (const n of Object.keys(props)) if (names.length < (s.minProperties ?? 0) && !names.includes(n)) names.push(n)
      return Object.fromEntries(names.map(n => [n, n in hints ? hints[n] : props[n] === undefined ? 'x' : minimalValue(props[n], hints)]))
    }
    case 'array': return Array.from({ length: s.minItems ?? 0 }, () => minimalValue(s.items ?? {}, hints))
    case 'string': return minimalString(s)
    case 'integer': case 'number': return s.minimum ?? (s.exclusiveMinimum === undefined ? 0 : s.exclusiveMinimum + 1)
    case 'boolean': return false
    case 'null': return null
    default: return {}
  }
}

/** The request of `op` with minimal valid body, query and headers (required members only). */
export function minimalRequest (op: Operation, params: Record<string, string>, hints: Record<string, unknown> = {}): { path: string, body?: unknown, headers: Record<string, string> } {
  const q = new URLSearchParams()
  for (const [name, s] of Object.entries(op.query)) if (s['x-required'] === true) q.set(name, String(minimalValue(s, hints)))
  const headers: Record<string, string> = {}
  for (const [name, s] of Object.entries(op.headers)) if (s['x-required'] === true) headers[name] = String(minimalValue(s, hints))
  const qs = q.toString()
  return { path: fillPath(op.path, params) + (qs === '' ? '' : `?${qs}`), ...(op.body === undefined ? {} : { body: minimalValue(op.body, hints) }), headers }
}

/** Asserts an RFC 9457 answer: the status, `application/problem+json`, and type, title, status and detail. */
export function assertProblem (r: ApiResponse, what: string, status?: number): void {
  if (status !== undefined) assert.equal(r.status, status, `${what}: ${r.status} ${JSON.stringify(r.body)}`)
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/, `${what}: content-type ${r.headers.get('content-type') ?? ''}`)
  assert.equal(typeof r.body, 'object', `${what}: body ${JSON.stringify(r.body)}`)
  for (const m of ['type', 'title', 'detail']) assert.equal(typeof r.body[m], 'string', `${what}: problem.${m} in ${JSON.stringify(r.body)}`)
  assert.equal(r.body.status, r.status, `${what}: problem.status`)
}

export type ViewerOutcome =
  | { kind: 'refused', status: number } // the upgrade answered with an HTTP status
  | { kind: 'closed', code: number, reason: string } // upgraded, then closed before any console byte
  | { kind: 'accepted', first: Buffer } // bytes of the console came: past authorization
  | { kind: 'error', message: string }

export interface ConsoleAddress { gatewayUrl: string, sessionId: string, token: string }

/** The gateway, session and token of a console URL (`…/s/<session>#<token>`). */
export function consoleAddress (url: string): ConsoleAddress {
  const u = new URL(url)
  const m = /\/s\/([^/]+)$/.exec(u.pathname)
  assert.ok(m !== null, 'a console URL names its session')
  return { gatewayUrl: `${u.protocol}//${u.host}${u.pathname.slice(0, m.index)}`, sessionId: m[1] as string, token: u.hash.slice(1) }
}

export interface ViewerOptions {
  /** Origin header; default the gateway's own. `null` sends none. */
  origin?: string | null
  /** The Sec-WebSocket-Protocol list; default `binary` and the token's. */
  protocols?: string[]
  timeoutMs?: number
}

/**
 * Opens a console WebSocket as the page does (the token in Sec-WebSocket-Protocol) and reports how it ended:
 * refused at the upgrade, closed before any console byte, or accepted (the first bytes of the console). The
 * gateway sends nothing before the token is checked, so one byte means the viewer got past authorization.
 */
export async function tryViewer (a: ConsoleAddress, o: ViewerOptions = {}): Promise<ViewerOutcome> {
  const base = a.gatewayUrl.replace(/^http/, 'ws')
  const protocols = o.protocols ?? ['binary', `porthole.token.${a.token}`]
  const origin = o.origin === undefined ? new URL(a.gatewayUrl).origin : o.origin
  const ws = new WebSocket(`${base}/s/${a.sessionId}/ws`, protocols, origin === null ? {} : { origin })
  return await new Promise<ViewerOutcome>(resolve => {
    const done = (v: ViewerOutcome): void => { clearTimeout(timer); ws.removeAllListeners(); ws.on('error', () => {}); ws.terminate(); resolve(v) }
    const timer = setTimeout(() => done({ kind: 'error', message: 'no answer' }), o.timeoutMs ?? 15_000)
    ws.once('unexpected-response', (_req, res) => done({ kind: 'refused', status: res.statusCode ?? 0 }))
    ws.once('message', (d: Buffer) => done({ kind: 'accepted', first: d }))
    ws.once('close', (code, reason) => done({ kind: 'closed', code, reason: reason.toString() }))
    ws.once('error', (err) => done({ kind: 'error', message: err.message }))
  })
}

export interface LiveViewer {
  ws: WebSocket
  /** The VM's desktop name from its RFB ServerInit. */
  name: string
  closed: Promise<{ code: number, reason: string }>
}

/**
 * Connects as a VNC viewer and completes the RFB handshake through the gateway (security "None": the gateway
 * answers the VM's password itself) up to the VM's ServerInit, proof that the bytes came from the VM.
 */
export async function vncViewer (a: ConsoleAddress, timeoutMs = 20_000): Promise<LiveViewer> {
  const ws = new WebSocket(`${a.gatewayUrl.replace(/^http/, 'ws')}/s/${a.sessionId}/ws`, ['binary', `porthole.token.${a.token}`], { origin: new URL(a.gatewayUrl).origin })
  const closed = new Promise<{ code: number, reason: string }>(resolve => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  ws.on('error', () => {})
  let buf = Buffer.alloc(0)
  let want: (() => void) | undefined
  ws.on('message', (d: Buffer) => { buf = Buffer.concat([buf, d]); want?.() })
  const read = async (n: number): Promise<Buffer> => {
    while (buf.length < n) {
      await new Promise<void>((resolve, reject) => {
        want = resolve
        void closed.then(c => reject(new Error(`console closed ${c.code} ${c.reason}`)))
      })
    }
    const out = buf.subarray(0, n)
    buf = buf.subarray(n)
    return out
  }
  const handshake = async (): Promise<string> => {
    assert.equal((await read(12)).toString('latin1'), 'RFB 003.008\n')
    ws.send(Buffer.from('RFB 003.008\n'))
    const n = (await read(1))[0] as number
    assert.ok([...await read(n)].includes(1), 'security type None offered')
    ws.send(Buffer.from([1]))
    assert.equal((await read(4)).readUInt32BE(0), 0, 'security result OK')
    ws.send(Buffer.from([1])) // ClientInit: shared
    const init = await read(24)
    return (await read(init.readUInt32BE(20))).toString('utf8')
  }
  let timer: NodeJS.Timeout | undefined
  try {
    const name = await Promise.race([handshake(), new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('no ServerInit in time')), timeoutMs) })])
    return { ws, name, closed }
  } catch (err) {
    ws.terminate()
    throw err
  } finally { clearTimeout(timer) }
}

/**
 * Samples `ps -eo args` (every process's command line on this machine) about every `intervalMs` until
 * stopped, keeping each distinct line: a secret passed on a command line shows there to every local user.
 */
export function psSampler (intervalMs = 100): { stop: () => Promise<string[]>, peek: () => Promise<string[]>, samples: () => number } {
  const lines = new Set<string>()
  let n = 0
  let stopped = false
  let running: Promise<void> = Promise.resolve()
  const once = async (): Promise<void> => await new Promise<void>(resolve => {
    const p = spawn('ps', ['-eo', 'args', '--no-headers', '-ww'], { stdio: ['ignore', 'pipe', 'ignore'] })
    let out = ''
    p.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    p.once('close', () => { for (const l of out.split('\n')) if (l !== '') lines.add(l); n++; resolve() })
    p.once('error', () => resolve())
  })
  const loop = async (): Promise<void> => {
    while (!stopped) {
      await once()
      await new Promise(resolve => setTimeout(resolve, intervalMs))
    }
  }
  running = loop()
  return {
    samples: () => n,
    peek: async () => [...lines],
    stop: async () => { stopped = true; await running; return [...lines] }
  }
}

/** The names of the secrets found in `text` (never the secrets themselves: they would land in the test's output). */
export function secretsIn (text: string, secrets: Record<string, string>): string[] {
  for (const [name, secret] of Object.entries(secrets)) if (secret.length < 6) throw new Error(`secret ${name} is too short to search for`)
  return Object.entries(secrets).filter(([, secret]) => text.includes(secret)).map(([name]) => name)
}

/**
 * How many of `tokens` stand in `text` as a whole token-shaped run: for thousands of forged tokens against
 * megabytes of log lines, where searching for each would take minutes.
 */
export function tokensIn (text: string, tokens: Iterable<string>): number {
  const runs = new Set(text.match(/[A-Za-z0-9_-]{8,}/g) ?? [])
  let n = 0
  for (const t of tokens) if (runs.has(t)) n++
  return n
}

/** Every value stored under the stack's namespace in Redis, as text (strings, hashes, lists, sets, zsets, streams). */
export async function redisDump (stack: Stack): Promise<string> {
  const r = new Redis(stack.svc.redisUrl)
  try {
    const out: string[] = []
    let cursor = '0'
    do {
      const [next, batch] = await r.scan(cursor, 'MATCH', `${stack.ns}:*`, 'COUNT', 1000)
      cursor = next
      for (const k of batch) {
        const type = await r.type(k)
        const v = type === 'string'
          ? await r.get(k)
          : type === 'hash' ? await r.hgetall(k)
            : type === 'list' ? await r.lrange(k, 0, -1)
              : type === 'set' ? await r.smembers(k)
                : type === 'zset' ? await r.zrange(k, 0, -1)
                  : type === 'stream' ? await r.xrange(k, '-', '+') : null
        out.push(`${k} ${JSON.stringify(v)}`)
      }
    } while (cursor !== '0')
    return out.join('\n')
  } finally { r.disconnect() }
}
