import { ConfigError } from '@porthole/shared/config'
import { createLogger } from '@porthole/shared/logging'
import { readConfig, type GatewayConfig } from './config.js'
import { startGateway, type Gateway } from './service.js'

let config: GatewayConfig
try {
  config = readConfig()
} catch (err) {
  process.stderr.write(`console-gateway: bad configuration: ${(err as Error).message}\n`)
  process.exit(1)
}
const log = createLogger({ name: 'console-gateway', level: config.LOG_LEVEL })

// The handlers come first: the start waits up to 30 s for the broker, and a SIGTERM in that time (a deploy, a
// scale-down) must end the start and exit 0, not kill the process with Node's default 143. The start is
// abandoned: nothing was served yet, and a delivery it may have taken goes back to its queue on exit.
let gw: Gateway | undefined
let stopping = false
const stop = (signal: string): void => {
  if (stopping) return
  stopping = true
  log.info({ signal }, 'shutting down')
  if (gw === undefined) { log.info('stopped before ready'); process.exit(0) }
  gw.close().then(() => process.exit(0), (err: unknown) => {
    log.error({ err }, 'shutdown failed')
    process.exit(1)
  })
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))

try {
  gw = await startGateway(config, log)
  log.info({ port: gw.port, publicUrl: config.PUBLIC_GATEWAY_URL }, 'ready')
} catch (err) {
  if (err instanceof ConfigError) process.stderr.write(`console-gateway: bad configuration: ${err.message}\n`)
  else log.fatal({ err: { message: (err as Error).message } }, 'console-gateway failed to start')
  process.exit(1)
}
