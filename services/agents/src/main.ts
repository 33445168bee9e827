/** Entry point: read the configuration, start the agent host, close cleanly on SIGTERM/SIGINT. */
import './threadpool.js' // first: sizes libuv's thread pool before anything uses it
import { createLogger } from '@porthole/shared/logging'
import { readConfig, type AgentsConfig } from './config.js'
import { startAgents } from './host.js'

let config: AgentsConfig
try {
  config = readConfig()
} catch (err) {
  process.stderr.write(`agents: bad configuration: ${(err as Error).message}\n`)
  process.exit(1)
}

const log = createLogger({ name: 'agents', level: config.LOG_LEVEL })
try {
  const host = await startAgents({ config, log })
  log.info({ namespace: config.PORTHOLE_NAMESPACE, types: config.AGENT_TYPES }, 'ready')
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'stopping')
    host.close().then(() => { log.info('stopped'); process.exit(0) }, (err: unknown) => { log.error({ err }, 'close failed'); process.exit(1) })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
} catch (err) {
  log.fatal({ err: { name: (err as Error).name, message: (err as Error).message } }, 'start failed')
  process.exit(1)
}
