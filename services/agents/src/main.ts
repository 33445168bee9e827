/** Entry point: the agent host, run as every service is (packages/shared/src/service). */
import { runService } from '@porthole/shared/service'
import { readConfig } from './config.js'
import { startAgents } from './host.js'
import { threadPoolWarning } from './threadpool.js'

await runService({
  name: 'agents',
  readConfig,
  prepare: (_config, log) => {
    const warning = threadPoolWarning()
    if (warning !== undefined) log.warn({ UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE }, warning)
  },
  start: async (config, log) => await startAgents({ config, log }),
  ready: (host, config) => ({ namespace: config.PORTHOLE_NAMESPACE, types: config.AGENT_TYPES, metricsPort: host.metricsPort })
})
