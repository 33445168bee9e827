/**
 * The life of a service process, the same for all four: configuration from the environment (a bad one is
 * exit code 2 with the variable named), a "ready" log line once it serves, and a clean exit 0 on SIGTERM or
 * SIGINT — also when the signal comes while the start still waits for the broker.
 */
import { ConfigError } from '../config/index.js'
import { brief, createLogger, type Logger } from '../logging/index.js'

/**
 * The exit code of a service that stopped on a bad setting (after a stderr line `<name>: bad configuration:
 * <VARIABLE>: <why>`). A supervisor does not restart it: the same environment fails the same way
 * (scripts/start.mjs stops everything and repeats the line).
 */
export const EXIT_BAD_CONFIG = 2

export interface ServiceMain<C extends { LOG_LEVEL: string }, S extends { close: () => Promise<void> }> {
  name: string
  readConfig: () => C
  /** Aborting `signal` means a stop came during the start: it may give up (and close what it opened). */
  start: (config: C, log: Logger, signal: AbortSignal) => Promise<S>
  /** What the "ready" line says besides its message. */
  ready: (service: S, config: C) => Record<string, unknown>
  /** Runs once the logger exists, before the start (e.g. a warning about the environment). */
  prepare?: (config: C, log: Logger) => void
  /** A stop that takes longer ends the process with exit code 1 (default: no limit). */
  stopTimeoutMs?: number
}

/** Where a bundle's loader (scripts/lib/bundle-main.mjs) says how V8's code cache served this start. */
const CODE_CACHE = Symbol.for('porthole.codeCache')

export async function runService<C extends { LOG_LEVEL: string }, S extends { close: () => Promise<void> }> (o: ServiceMain<C, S>): Promise<void> {
  let config: C
  try {
    config = o.readConfig()
  } catch (err) {
    process.stderr.write(`${o.name}: bad configuration: ${(err as Error).message}\n`)
    process.exit(EXIT_BAD_CONFIG)
  }
  const log = createLogger({ name: o.name, level: config.LOG_LEVEL })
  o.prepare?.(config, log)

  // The handlers come first: the start waits up to 30 s for the broker, and a signal in that time (a deploy, a
  // scale-down) must end the process with 0, not Node's default 143. They stay on ("on", not "once"): Ctrl-C
  // signals the whole process group and the supervisor then forwards SIGTERM too.
  const starting = new AbortController()
  let service: S | undefined
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'stopping')
    if (o.stopTimeoutMs !== undefined) setTimeout(() => { log.error('stopping took too long'); process.exit(1) }, o.stopTimeoutMs).unref()
    if (service === undefined) {
      // Not ready yet: the start is told to give up; a start that does not listen is abandoned (a delivery it
      // may have taken is unacked and goes back to its queue when the process exits).
      starting.abort()
      setTimeout(() => { log.info('stopped before ready'); process.exit(0) }, 2000)
      return
    }
    service.close().then(() => { log.info('stopped'); process.exit(0) }, (err: unknown) => { log.error({ err: brief(err) }, 'close failed'); process.exit(1) })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))

  try {
    service = await o.start(config, log, starting.signal)
  } catch (err) {
    if (stopping) { log.info('stopped before ready'); process.exit(0) }
    if (err instanceof ConfigError) { process.stderr.write(`${o.name}: bad configuration: ${err.message}\n`); process.exit(EXIT_BAD_CONFIG) }
    log.fatal({ err: brief(err) }, 'start failed')
    process.exit(1)
  }
  if (stopping) { // the signal came as the start completed
    await service.close().catch(() => {})
    log.info('stopped')
    process.exit(0)
  }
  log.info(o.ready(service, config), 'ready')
  // Run from its bundle, the service now has its code cache saved if it needed one (scripts/lib/bundle-main.mjs):
  // after the ready line, so that the cache holds what the start compiled and the start does not wait for it.
  const codeCache = (globalThis as { [CODE_CACHE]?: { settle: () => Record<string, unknown> } })[CODE_CACHE]
  if (codeCache !== undefined) log.debug(codeCache.settle(), 'code cache')
}
