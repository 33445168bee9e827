/**
 * One pino root per process; children add `{ component }` and then `{ jobId, serverId, traceId }`.
 * Secrets are redacted by path, and URLs lose their query strings (console tokens travel there).
 */
import { pino, type Logger, type LoggerOptions } from 'pino'

export type { Logger } from 'pino'

/** Paths pino removes from every log line, whatever logged them. */
export const REDACT_PATHS = [
  'password', '*.password', '*.*.password', '*.*.*.password',
  'token', '*.token', '*.*.token',
  'key', '*.key',
  'secret', '*.secret',
  'secrets', '*.secrets', '*.*.secrets',
  'target', '*.target',
  'authorization', '*.authorization', '*.*.authorization',
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["sec-websocket-protocol"]',
  'headers.authorization',
  // Settings that are secrets, at the top level and one level down (a logged `config` or `env` object).
  ...['PORTHOLE_SECRET_KEY', 'PORTHOLE_OLD_SECRET_KEYS', 'PORTHOLE_ADMIN_TOKEN', 'CONSOLE_KEY', 'CONSOLE_OLD_KEYS',
    'CONSOLE_TRANSIT_KEY', 'CONSOLE_OLD_TRANSIT_KEYS', 'SOL_BRIDGE_SECRET', 'RABBITMQ_URL', 'REDIS_URL'].flatMap(k => [k, `*.${k}`])
]

/** Drops the query string (and fragment) of a URL or path for logging. */
export function stripQuery (url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  const i = url.search(/[?#]/)
  return i === -1 ? url : url.slice(0, i)
}

export interface LoggerSettings { name: string, level?: string, destination?: pino.DestinationStream }

export function createLogger (s: LoggerSettings): Logger {
  const opts: LoggerOptions = {
    name: s.name,
    level: s.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: s.name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: {
      err: pino.stdSerializers.err,
      req: (req: { method?: string, url?: string, id?: string, ip?: string }) => ({ id: req.id, method: req.method, url: stripQuery(req.url), ip: req.ip }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode })
    }
  }
  return s.destination === undefined ? pino(opts) : pino(opts, s.destination)
}

/**
 * An error as a log field: its class, code and message, without stack or cause (which may carry URLs), and
 * without the password of any URL in the message (amqplib sometimes puts the connection URL there).
 */
export function brief (err: unknown): { name?: string, code?: unknown, message: string } {
  const e = err as { name?: unknown, code?: unknown, message?: unknown } | null | undefined
  const out: { name?: string, code?: unknown, message: string } = { message: String(e?.message ?? err).replace(/\/\/[^@/\s]*@/g, '//***@') }
  if (typeof e?.name === 'string') out.name = e.name
  if (e?.code !== undefined) out.code = e.code
  return out
}
