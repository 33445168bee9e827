/** The receiver's settings: the only place it reads the environment. */
import { commonSettings, int, loadConfig, metricsHostSettings, type ConfigOf } from '@porthole/shared/config'

export const receiverSettings = {
  ...commonSettings,
  ...metricsHostSettings,
  RECEIVER_METRICS_PORT: int('port of the receiver\'s metrics listener (`/metrics`, `/healthz`, `/readyz`; 0: any free port, named in the ready line)', 9101, 0, 65535),
  RECEIVER_PREFETCH: int('messages each receiver replica handles at once from each queue it consumes (AMQP prefetch; jobs and results, each in two lanes, and dead letters)', 64, 1, 10_000),
  DEADLINE_SWEEP_MS: int('how often the receiver ends unfinished jobs whose deadline has passed (milliseconds)', 250, 10, 60_000),
  TENANT_MAX_IN_FLIGHT: int('status and console jobs of one tenant dispatched to agents and not yet finished, across all receiver replicas (set the same on each); more wait, still `queued`, earliest deadline first, while other tenants\' jobs pass, and end `timed_out` if no slot frees by their deadline. Default: a quarter of AGENT_PREFETCH\'s default, so that one tenant never takes more than a quarter of an agent\'s prefetch (bench/README.md, fair-share)', 4, 1, 100_000),
  TENANT_MAX_POWER_IN_FLIGHT: int('the same for power jobs, counted apart (they take seconds to minutes each, in queues of their own): a tenant\'s mass reboot holds back neither other tenants\' power jobs nor its own consoles. Default: half of AGENT_PREFETCH\'s default', 8, 1, 100_000)
}

export type ReceiverConfig = ConfigOf<typeof receiverSettings>

/** Parses the environment; throws a ConfigError naming the first bad variable. */
export function readConfig (env: NodeJS.ProcessEnv = process.env): ReceiverConfig {
  return loadConfig(receiverSettings, env)
}
