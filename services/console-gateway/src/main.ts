/** Entry point: the console gateway, run as every service is (packages/shared/src/service). */
import { runService } from '@porthole/shared/service'
import { readConfig } from './config.js'
import { startGateway } from './service.js'

await runService({
  name: 'console-gateway',
  readConfig,
  start: async (config, log) => await startGateway(config, log),
  ready: (gw, config) => ({ port: gw.port, metricsPort: gw.metricsPort, publicUrl: config.PUBLIC_GATEWAY_URL })
})
