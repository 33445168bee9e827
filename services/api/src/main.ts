/** Entry point: the API, run as every service is (packages/shared/src/service). */
import { runService } from '@porthole/shared/service'
import { loadApiConfig } from './config.js'
import { startApi } from './service.js'

await runService({
  name: 'api',
  readConfig: () => loadApiConfig(),
  start: async (config, log) => await startApi(config, log),
  ready: (api, config) => {
    const addr = api.app.server.address()
    return { port: typeof addr === 'object' && addr !== null ? addr.port : config.API_PORT, namespace: config.PORTHOLE_NAMESPACE }
  },
  // Requests in flight get this long to finish.
  stopTimeoutMs: 10_000
})
