/** Entry point: read the configuration, start the receiver, close cleanly on SIGTERM/SIGINT. */
import { createLogger } from '@porthole/shared/logging'
import { readConfig, type ReceiverConfig } from './config.js'
import { startReceiver } from './service.js'

let config: ReceiverConfig
try {
  config = readConfig()
} catch (err) {
  process.stderr.write(`receiver: bad configuration: ${(err as Error).message}\n`)
  process.exit(1)
}

const log = createLogger({ name: 'receiver', level: config.LOG_LEVEL })
try {
  const receiver = await startReceiver({ config, log })
  log.info({ namespace: config.PORTHOLE_NAMESPACE }, 'ready')
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'stopping')
    receiver.close().then(() => { log.info('stopped'); process.exit(0) }, (err: unknown) => { log.error({ err }, 'close failed'); process.exit(1) })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
} catch (err) {
  log.fatal({ err }, 'start failed')
  process.exit(1)
}
