/** Entry point: read the configuration, start the agent host, close cleanly on SIGTERM/SIGINT. */
import { createLogger } from '@porthole/shared/logging'
import { readConfig, type AgentsConfig } from './config.js'
import { startAgents, type AgentHost } from './host.js'
import { threadPoolWarning } from './threadpool.js'

let config: AgentsConfig
try {
  config = readConfig()
} catch (err) {
  process.stderr.write(`agents: bad configuration: ${(err as Error).message}\n`)
  process.exit(1)
}

const log = createLogger({ name: 'agents', level: config.LOG_LEVEL })
const poolWarning = threadPoolWarning()
if (poolWarning !== undefined) log.warn({ UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE }, poolWarning)

// The handlers come first: the start waits up to 30 s for the broker, and a SIGTERM in that time (a deploy, a
// scale-down) must end the start and exit 0, not kill the process with Node's default 143. The start is
// abandoned: a delivery it may already have taken is unacked and goes back to its queue when the process exits.
let host: AgentHost | undefined
let stopping = false
const stop = (signal: string): void => {
  if (stopping) return
  stopping = true
  log.info({ signal }, 'stopping')
  if (host === undefined) { log.info('stopped before ready'); process.exit(0) }
  host.close().then(() => { log.info('stopped'); process.exit(0) }, (err: unknown) => { log.error({ err }, 'close failed'); process.exit(1) })
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))

try {
  host = await startAgents({ config, log })
  log.info({ namespace: config.PORTHOLE_NAMESPACE, types: config.AGENT_TYPES }, 'ready')
} catch (err) {
  log.fatal({ err: { name: (err as Error).name, message: (err as Error).message } }, 'start failed')
  process.exit(1)
}
