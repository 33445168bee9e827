/** Entry point: the receiver, run as every service is (packages/shared/src/service). */
import { runService } from '@porthole/shared/service'
import { readConfig } from './config.js'
import { startReceiver } from './service.js'

await runService({
  name: 'receiver',
  readConfig,
  // A stop during the start aborts it: the receiver closes what it opened and the process exits 0.
  start: async (config, log, signal) => await startReceiver({ config, log, signal }),
  ready: (receiver, config) => ({ namespace: config.PORTHOLE_NAMESPACE, metricsPort: receiver.metricsPort })
})
