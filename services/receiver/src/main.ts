/** Entry point: read the configuration, start the receiver, close cleanly on SIGTERM/SIGINT. */
import { brief, createLogger } from '@porthole/shared/logging'
import { readConfig, type ReceiverConfig } from './config.js'
import { startReceiver, type Receiver } from './service.js'

let config: ReceiverConfig
try {
  config = readConfig()
} catch (err) {
  process.stderr.write(`receiver: bad configuration: ${(err as Error).message}\n`)
  process.exit(1)
}

const log = createLogger({ name: 'receiver', level: config.LOG_LEVEL })

// The handlers come first: the start waits up to 30 s for the broker, and a SIGTERM in that time (a deploy, a
// scale-down) must end the start and exit 0, not kill the process with Node's default 143.
const starting = new AbortController()
let receiver: Receiver | undefined
let stopping = false
const stop = (signal: string): void => {
  if (stopping) return
  stopping = true
  log.info({ signal }, 'stopping')
  if (receiver === undefined) { starting.abort(); return } // the start closes what it opened, below
  receiver.close().then(() => { log.info('stopped'); process.exit(0) }, (err: unknown) => { log.error({ err: brief(err) }, 'close failed'); process.exit(1) })
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))

try {
  const r = await startReceiver({ config, log, signal: starting.signal })
  receiver = r
  if (stopping) { // the signal came as the start completed
    await r.close()
    log.info('stopped')
    process.exit(0)
  }
  log.info({ namespace: config.PORTHOLE_NAMESPACE }, 'ready')
} catch (err) {
  if (stopping) {
    log.info('stopped before ready')
    process.exit(0)
  }
  log.fatal({ err }, 'start failed')
  process.exit(1)
}
