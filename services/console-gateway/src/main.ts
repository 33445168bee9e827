import { ConfigError } from '@porthole/shared/config'
import { createLogger } from '@porthole/shared/logging'
import { readConfig, type GatewayConfig } from './config.js'
import { startGateway } from './service.js'

let config: GatewayConfig
try {
  config = readConfig()
} catch (err) {
  process.stderr.write(`console-gateway: bad configuration: ${(err as Error).message}\n`)
  process.exit(1)
}
const log = createLogger({ name: 'console-gateway', level: config.LOG_LEVEL })

try {
  const gw = await startGateway(config, log)
  log.info({ port: gw.port, publicUrl: config.PUBLIC_GATEWAY_URL }, 'ready')
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'shutting down')
    gw.close().then(() => process.exit(0), (err: unknown) => {
      log.error({ err }, 'shutdown failed')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
} catch (err) {
  if (err instanceof ConfigError) process.stderr.write(`console-gateway: bad configuration: ${err.message}\n`)
  else log.fatal({ err: { message: (err as Error).message } }, 'console-gateway failed to start')
  process.exit(1)
}
