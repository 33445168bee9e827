/** The API process: configuration from the environment, listen, "ready", clean exit on SIGTERM/SIGINT. */
import { ConfigError } from '@porthole/shared/config'
import { createLogger } from '@porthole/shared/logging'
import { loadApiConfig, type ApiConfig } from './config.js'
import { startApi } from './service.js'

let config: ApiConfig
try {
  config = loadApiConfig()
} catch (err) {
  process.stderr.write(`porthole-api: bad configuration: ${err instanceof ConfigError ? err.message : String(err)}\n`)
  process.exit(2)
}

const log = createLogger({ name: 'api', level: config.LOG_LEVEL })
// Handlers first, and on rather than once: Ctrl-C signals the whole process group and the supervisor then
// forwards SIGTERM too, so a second signal must be ignored, not left to its default (exit 143).
let api: Awaited<ReturnType<typeof startApi>> | undefined
let stopping = false
const stop = (signal: string): void => {
  if (stopping) return
  stopping = true
  log.info({ signal }, 'shutting down')
  const force = setTimeout(() => { log.error('shutdown took too long'); process.exit(1) }, 10_000)
  force.unref()
  if (api === undefined) { log.info('stopped before ready'); process.exit(0) }
  api.close().then(() => { log.info('stopped'); process.exit(0) }, (err: unknown) => { log.error({ err }, 'shutdown failed'); process.exit(1) })
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
try {
  api = await startApi(config, log)
  const addr = api.app.server.address()
  log.info({ port: typeof addr === 'object' && addr !== null ? addr.port : config.API_PORT, namespace: config.PORTHOLE_NAMESPACE }, 'ready')
  if (stopping) await api.close().then(() => process.exit(0))
} catch (err) {
  log.fatal({ err }, 'start failed')
  process.exit(1)
}
