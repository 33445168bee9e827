/**
 * The gateway's HTTP surface (node:http + ws):
 * - `GET /healthz`
 * - `GET /s/<sessionId>`: the console page. Static: it names no server and holds no secret; it reads the
 *   token from the URL fragment, removes it from the address bar, and uses it only in headers.
 * - `GET /s/<sessionId>/info` with `Authorization: Bearer <token>`: what the page shows (server name,
 *   protocol, expiry), or why the link no longer works.
 * - `GET /s/assets/...`: the page's script and styles, noVNC and guacamole-common-js, served from the
 *   installed packages (no CDN).
 * - WebSocket `/s/<sessionId>/ws`: the console itself (see viewers.ts), Origin checked before the upgrade.
 * All paths are relative to PUBLIC_GATEWAY_URL's path, which a proxy may or may not strip.
 */
import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { dirname, extname, join, resolve, sep } from 'node:path'
import type { Duplex } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { WebSocketServer } from 'ws'
import type { Logger } from '@porthole/shared/logging'
import { stripQuery } from '@porthole/shared/logging'
import type { ConsoleSessionStore } from '@porthole/shared/store'
import { checkToken, TOKEN_PROTOCOL, tokenFromProtocols, type ViewerHub } from './viewers.js'

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
const PAGE = new RegExp(`^/s/(${UUID})$`)
const INFO = new RegExp(`^/s/(${UUID})/info$`)
const WS = new RegExp(`^/s/(${UUID})/ws$`)
const ASSET = /^\/s\/assets\/([A-Za-z0-9._/-]+)$/

/** Where the page's files come from. */
const PUBLIC_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'public')
const NOVNC_DIR = resolve(dirname(fileURLToPath(import.meta.resolve('@novnc/novnc'))), '..')
const GUAC_FILE = resolve(dirname(fileURLToPath(import.meta.resolve('guacamole-common-js'))), 'guacamole-common.js')

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

const TYPES: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8' }

export interface HttpDeps {
  hub: ViewerHub
  sessions: ConsoleSessionStore
  allowedOrigins: Set<string>
  publicUrl: string
  trustProxy: boolean
  healthy: () => boolean
  log: Logger
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
  const files = new Map<string, Buffer>()
  const readAsset = async (rel: string): Promise<{ body: Buffer, type: string } | undefined> => {
    let file: string | undefined
    if (rel === 'app.js' || rel === 'app.css' || rel === 'console.html') file = join(PUBLIC_DIR, rel)
    else if (rel === 'guacamole/guacamole-common.js') file = GUAC_FILE
    else if (rel.startsWith('novnc/core/') || rel.startsWith('novnc/vendor/')) {
      file = resolve(NOVNC_DIR, rel.slice('novnc/'.length))
      if (!file.startsWith(NOVNC_DIR + sep) || extname(file) !== '.js') return undefined
    }
    if (file === undefined) return undefined
    const type = TYPES[extname(file)]
    if (type === undefined) return undefined
    let body = files.get(file)
    if (body === undefined) {
      try { body = await readFile(file) } catch { return undefined }
      files.set(file, body)
    }
    return { body, type }
  }

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void => {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body), ...extra })
    res.end(body)
  }
  const problem = (res: ServerResponse, status: number, title: string, extra: Record<string, unknown> = {}): void =>
    send(res, status, 'application/problem+json', JSON.stringify({ type: 'about:blank', title, status, ...extra }), { 'cache-control': 'no-store' })

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = route(req.url)
    if (req.method !== 'GET' && req.method !== 'HEAD') { problem(res, 405, 'Method Not Allowed'); return }
    if (path === '/healthz') {
      const ok = d.healthy()
      send(res, ok ? 200 : 503, 'application/json', JSON.stringify({ status: ok ? 'ok' : 'degraded', viewers: d.hub.count }), { 'cache-control': 'no-store' })
      return
    }
    if (PAGE.test(path)) {
      const page = await readAsset('console.html')
      if (page === undefined) { problem(res, 500, 'Internal Server Error'); return }
      send(res, 200, page.type, page.body, { 'cache-control': 'no-store' })
      return
    }
    const info = INFO.exec(path)
    if (info !== null) {
      const auth = req.headers.authorization
      const token = auth?.startsWith('Bearer ') === true ? auth.slice(7).trim() : undefined
      const c = await checkToken(d.sessions, info[1] as string, token)
      if (!c.ok) { problem(res, c.reason === 'invalid' ? 401 : 410, 'Console link not usable', { detail: c.reason, reason: c.reason }); return }
      const s = c.session
      send(res, 200, 'application/json', JSON.stringify({ sessionId: s.id, serverName: s.serverName, protocol: s.protocol, expiresAt: s.expiresAt, singleUse: s.singleUse, now: new Date().toISOString() }), { 'cache-control': 'no-store' })
      return
    }
    const asset = ASSET.exec(path)
    if (asset !== null) {
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
    maxPayload: 16 * 1024 * 1024,
    handleProtocols: (protocols) => {
      for (const p of protocols) if (!p.startsWith(TOKEN_PROTOCOL)) return p
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
      d.hub.accept(ws, m[1] as string, token, ip).catch((err: unknown) => {
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
