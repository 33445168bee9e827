/**
 * The gateway's HTTP surface (node:http + ws):
 * - `GET /healthz`
 * - `GET /s/<sessionId>`: the console page. Static: it names no server and holds no secret; it reads the
 *   token from the URL fragment, removes it from the address bar, and uses it only in headers.
 * - `GET /s/<sessionId>/info` and `POST /s/<sessionId>/renew`: the page's look-ups and renewal (page-api.ts).
 * - `GET /s/assets/...`: the page's script and styles. Built (scripts/bundle.mjs, into dist/public): one
 *   minified module with the page's script and noVNC, one with guacamole-common-js, one with xterm.js (serial
 *   consoles), the styles (xterm.js's included), each named by a hash of its content and served `immutable`
 *   for a year (brotli or gzip, precompressed, when the browser takes it). Unbuilt (a checkout compiled with tsc only), the page falls back to the sources in public/
 *   and the modules of the installed packages (no CDN either way).
 * - WebSocket `/s/<sessionId>/ws`: the console itself (see viewers.ts), Origin checked before the upgrade.
 * All paths are relative to PUBLIC_GATEWAY_URL's path, which a proxy may or may not strip.
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { dirname, extname, join, resolve, sep } from 'node:path'
import type { Duplex } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { WebSocketServer, type WebSocket } from 'ws'
import type { Logger } from '@porthole/shared/logging'
import { stripQuery } from '@porthole/shared/logging'
import type { AuditLog, ConsoleSessionStore, ConsoleShareStore } from '@porthole/shared/store'
import { RESUME_PROTOCOL, TOKEN_PROTOCOL, tokenFromProtocols } from './admission.js'
import { pageApi } from './page-api.js'
import type { ViewerHub } from './viewers.js'

/** The largest message a viewer may send (RFB client cut text, a pasted line on a serial console). */
export const MAX_VIEWER_MESSAGE = 1024 * 1024

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
const PAGE = new RegExp(`^/s/(${UUID})$`)
const INFO = new RegExp(`^/s/(${UUID})/info$`)
const RENEW = new RegExp(`^/s/(${UUID})/renew$`)
const WS = new RegExp(`^/s/(${UUID})/ws$`)
const ASSET = /^\/s\/assets\/([A-Za-z0-9._/-]+)$/

/** Where the page's files come from. */
const PUBLIC_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'public')
const BUILT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'public')
const NOVNC_DIR = resolve(dirname(fileURLToPath(import.meta.resolve('@novnc/novnc'))), '..')
const GUAC_FILE = resolve(dirname(fileURLToPath(import.meta.resolve('guacamole-common-js'))), 'guacamole-common.js')
/** The close codes' one definition (@porthole/contracts), compiled: plain data the page imports as is. */
const CLOSE_CODES_FILE = resolve(dirname(fileURLToPath(import.meta.resolve('@porthole/contracts'))), 'console-close.js')
/** xterm.js (serial consoles): `assets/xterm/<name>` → the installed package's file. */
const XTERM_FILES: Record<string, string> = {
  'xterm.mjs': fileURLToPath(new URL('./lib/xterm.mjs', import.meta.resolve('@xterm/xterm/package.json'))),
  'xterm.css': fileURLToPath(new URL('./css/xterm.css', import.meta.resolve('@xterm/xterm/package.json'))),
  'addon-fit.mjs': fileURLToPath(new URL('./lib/addon-fit.mjs', import.meta.resolve('@xterm/addon-fit/package.json')))
}

/** Strict: our own scripts and styles only; WebSockets and fetches to our own origin only. */
export const CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:", "connect-src 'self'",
  "media-src 'self' blob:", "worker-src 'self' blob:", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"
].join('; ')

const SECURITY_HEADERS: Record<string, string> = {
  'referrer-policy': 'no-referrer',
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin'
}

const TYPES: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8' }

const IMMUTABLE = 'public, max-age=31536000, immutable'

/** The built page (scripts/bundle.mjs), or undefined when the workspace was compiled without it. */
export interface BuiltPage { page: string, assets: Set<string> }
export function builtPage (dir = BUILT_DIR): BuiltPage | undefined {
  try {
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { page?: unknown, assets?: unknown }
    if (typeof m.page !== 'string' || !Array.isArray(m.assets)) return undefined
    return { page: m.page, assets: new Set(m.assets.filter((a): a is string => typeof a === 'string' && /^[A-Za-z0-9._-]+$/.test(a))) }
  } catch {
    return undefined
  }
}

/** The encoding to send among those precompressed, by the request's Accept-Encoding (q=0 refuses). */
function pickEncoding (header: string | string[] | undefined): 'br' | 'gzip' | undefined {
  const accepted = new Set<string>()
  for (const part of (Array.isArray(header) ? header.join(',') : header ?? '').split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';')
    if (name === undefined || name === '') continue
    if (params.some(p => /^\s*q=0(\.0*)?\s*$/.test(p))) continue
    accepted.add(name)
  }
  return accepted.has('br') ? 'br' : accepted.has('gzip') ? 'gzip' : undefined
}

export interface HttpDeps {
  hub: ViewerHub
  /** Origins that may frame the console page (CONSOLE_FRAME_ANCESTORS: kiosk station pages); none by default. */
  frameAncestors?: readonly string[]
  sessions: ConsoleSessionStore
  shares: ConsoleShareStore
  audit: AuditLog
  allowedOrigins: Set<string>
  publicUrl: string
  trustProxy: boolean
  healthy: () => boolean
  log: Logger
  /** Counts what goes through each console WebSocket (metrics.ts). */
  instrument?: (ws: WebSocket) => void
}

export function createHttp (d: HttpDeps): Server {
  const log = d.log.child({ component: 'http' })
  const prefix = new URL(d.publicUrl).pathname.replace(/\/+$/, '')
  const route = (url: string | undefined): string => {
    const p = stripQuery(url) ?? '/'
    return prefix !== '' && p.startsWith(prefix + '/') ? p.slice(prefix.length) : p
  }
  const clientIp = (req: IncomingMessage): string | undefined => {
    if (d.trustProxy) {
      const xff = req.headers['x-forwarded-for']
      const first = (Array.isArray(xff) ? xff[0] : xff)?.split(',')[0]?.trim()
      if (first !== undefined && first !== '') return first
    }
    return req.socket.remoteAddress
  }
  const built = builtPage()
  if (built === undefined) log.warn('the console page is not bundled (run `npm run build`): serving its unbundled sources, which load slower')
  const files = new Map<string, Buffer | null>()
  /** A file's content, read once; undefined when it does not exist. */
  const cached = async (file: string): Promise<Buffer | undefined> => {
    let body = files.get(file)
    if (body === undefined) {
      body = await readFile(file).catch(() => null)
      files.set(file, body)
    }
    return body ?? undefined
  }
  const readAsset = async (rel: string): Promise<{ body: Buffer, type: string } | undefined> => {
    let file: string | undefined
    if (rel === 'app.js' || rel === 'boot.js' || rel === 'serial.js' || rel === 'keymap.js' || rel === 'app.css' || rel === 'console.html') file = join(PUBLIC_DIR, rel)
    else if (rel === 'guacamole/guacamole-common.js') file = GUAC_FILE
    else if (rel === 'shared/console-close.js') file = CLOSE_CODES_FILE
    else if (rel.startsWith('xterm/')) file = XTERM_FILES[rel.slice('xterm/'.length)]
    else if (rel.startsWith('novnc/core/') || rel.startsWith('novnc/vendor/')) {
      file = resolve(NOVNC_DIR, rel.slice('novnc/'.length))
      if (!file.startsWith(NOVNC_DIR + sep) || extname(file) !== '.js') return undefined
    }
    if (file === undefined) return undefined
    const type = TYPES[extname(file)]
    if (type === undefined) return undefined
    const body = await cached(file)
    return body === undefined ? undefined : { body, type }
  }
  /** A built, content-hashed asset, in the best encoding the request accepts. */
  const readBuilt = async (rel: string, req: IncomingMessage): Promise<{ body: Buffer, type: string, encoding?: 'br' | 'gzip' } | undefined> => {
    if (built === undefined || !built.assets.has(rel)) return undefined
    const type = TYPES[extname(rel)]
    if (type === undefined) return undefined
    const encoding = pickEncoding(req.headers['accept-encoding'])
    if (encoding !== undefined) {
      const body = await cached(join(BUILT_DIR, `${rel}.${encoding === 'br' ? 'br' : 'gz'}`))
      if (body !== undefined) return { body, type, encoding }
    }
    const body = await cached(join(BUILT_DIR, rel))
    return body === undefined ? undefined : { body, type }
  }

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void => {
    const headers: Record<string, string> = { ...SECURITY_HEADERS, 'content-type': type, 'content-length': String(Buffer.byteLength(body)), ...extra }
    for (const [k, v] of Object.entries(headers)) if (v === '') delete headers[k] // a header `extra` takes away
    res.writeHead(status, headers)
    res.end(body)
  }
  const problem = (res: ServerResponse, status: number, title: string, extra: Record<string, unknown> = {}): void =>
    send(res, status, 'application/problem+json', JSON.stringify({ type: 'about:blank', title, status, ...extra }), { 'cache-control': 'no-store' })

  const pages = pageApi({ ...d, send, problem, clientIp, log })
  // The console page itself may be framed by the origins named (a kiosk station's page); X-Frame-Options,
  // which cannot name several origins, gives way to the CSP's frame-ancestors then.
  const ancestors = (d.frameAncestors ?? []).map(o => new URL(o).origin)
  const pageHeaders: Record<string, string> = ancestors.length === 0
    ? {}
    : { 'content-security-policy': CSP.replace("frame-ancestors 'none'", `frame-ancestors ${ancestors.join(' ')}`), 'x-frame-options': '' }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = route(req.url)
    const renew = RENEW.exec(path)
    if (renew !== null) {
      if (req.method !== 'POST') { problem(res, 405, 'Method Not Allowed'); return }
      await pages.renew(req, res, renew[1] as string)
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') { problem(res, 405, 'Method Not Allowed'); return }
    if (path === '/healthz') {
      const ok = d.healthy()
      send(res, ok ? 200 : 503, 'application/json', JSON.stringify({ status: ok ? 'ok' : 'degraded', viewers: d.hub.count }), { 'cache-control': 'no-store' })
      return
    }
    if (PAGE.test(path)) {
      const page = built !== undefined
        ? { body: await cached(join(BUILT_DIR, built.page)), type: TYPES['.html'] as string }
        : await readAsset('console.html')
      if (page?.body === undefined) { problem(res, 500, 'Internal Server Error'); return }
      send(res, 200, page.type, page.body, { 'cache-control': 'no-store', ...pageHeaders })
      return
    }
    const info = INFO.exec(path)
    if (info !== null) { await pages.info(req, res, info[1] as string); return }
    const asset = ASSET.exec(path)
    if (asset !== null) {
      const b = await readBuilt(asset[1] as string, req)
      if (b !== undefined) {
        send(res, 200, b.type, b.body, { 'cache-control': IMMUTABLE, vary: 'accept-encoding', ...(b.encoding === undefined ? {} : { 'content-encoding': b.encoding }) })
        return
      }
      const a = await readAsset(asset[1] as string)
      if (a === undefined) { problem(res, 404, 'Not Found'); return }
      send(res, 200, a.type, a.body, { 'cache-control': 'public, max-age=3600' })
      return
    }
    problem(res, 404, 'Not Found')
  }

  const server = createServer((req, res) => {
    const started = Date.now()
    res.once('finish', () => log.debug({ method: req.method, url: stripQuery(req.url), status: res.statusCode, ms: Date.now() - started }, 'request'))
    handle(req, res).catch((err: unknown) => {
      log.error({ err: { message: (err as Error).message }, url: stripQuery(req.url) }, 'request failed')
      if (!res.headersSent) problem(res, 503, 'Service Unavailable')
      else res.destroy()
    })
  })

  // The subprotocol echoed back: the viewer's own ('binary' for noVNC, 'guacamole'), never the token one.
  const wss = new WebSocketServer({
    noServer: true,
    // A browser sends keys, pointer moves, update requests and clipboard text: 1 MiB is ample, and nobody
    // gets to make us buffer more before their token has been checked.
    maxPayload: MAX_VIEWER_MESSAGE,
    handleProtocols: (protocols) => {
      for (const p of protocols) if (!p.startsWith(TOKEN_PROTOCOL) && !p.startsWith(RESUME_PROTOCOL)) return p
      return false
    }
  })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {})
    const m = WS.exec(route(req.url))
    const origin = (req.headers.origin ?? '').toLowerCase()
    if (m === null) { refuse(socket, 404, 'Not Found'); return }
    if (!d.allowedOrigins.has(origin)) {
      log.warn({ origin: origin === '' ? undefined : origin, url: stripQuery(req.url) }, 'console WebSocket from a foreign origin refused')
      refuse(socket, 403, 'Forbidden')
      return
    }
    const token = tokenFromProtocols(req.headers['sec-websocket-protocol'])
    const ip = clientIp(req)
    wss.handleUpgrade(req, socket, head, (ws) => {
      d.instrument?.(ws)
      d.hub.accept(ws, m[1] as string, token, ip, tokenFromProtocols(req.headers['sec-websocket-protocol'], RESUME_PROTOCOL)).catch((err: unknown) => {
        log.error({ err: { message: (err as Error).message } }, 'viewer failed')
        ws.terminate()
      })
    })
  })
  server.on('close', () => wss.close())
  return server
}

function refuse (socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
}
