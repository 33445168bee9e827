/** Entry point: the agents' job runner, run as every service is (packages/shared/src/service). */
import { runService } from '@porthole/shared/service'
import { readConfig } from './config.js'
import { startAgents } from './runner.js'
import { threadPoolWarning } from './threadpool.js'

await runService({
  name: 'agents',
  readConfig,
  prepare: (config, log) => {
    const warning = threadPoolWarning(config.UV_THREADPOOL_SIZE)
    if (warning !== undefined) log.warn({ UV_THREADPOOL_SIZE: config.UV_THREADPOOL_SIZE }, warning)
  },
  start: async (config, log) => await startAgents({ config, log }),
  // The pacing it runs with, so that an operator (and the agents benchmark) reads it from the process itself.
  ready: (runner, config) => ({
    namespace: config.PORTHOLE_NAMESPACE,
    pacing: { AGENT_PREFETCH: config.AGENT_PREFETCH, KVM_POLL_MS: config.KVM_POLL_MS, IPMI_POLL_MS: config.IPMI_POLL_MS, IPMI_MIN_INTERVAL_MS: config.IPMI_MIN_INTERVAL_MS, OVIRT_POLL_MS: config.OVIRT_POLL_MS },
    types: config.AGENT_TYPES,
    metricsPort: runner.metricsPort
  })
})
