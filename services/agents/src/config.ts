/** The agents' settings: the only place this service reads the environment. */
import { AGENT_TYPES as KNOWN_AGENT_TYPES, type AgentType } from '@porthole/contracts'
import { commonSettings, ConfigError, consoleTransitKeySettings, int, kvmPolicyOf, kvmPolicySettings, loadConfig, metricsHostSettings, optional, secretKeySettings, solBridgeSettings, str, type ConfigOf, type Setting } from '@porthole/shared/config'

function agentTypes (doc: string, def: AgentType[]): Setting<AgentType[]> {
  return {
    doc,
    default: def,
    parse (v) {
      const out = [...new Set(v.split(',').map(s => s.trim()).filter(s => s !== ''))]
      if (out.length === 0) throw new Error('expected at least one agent type')
      for (const t of out) {
        if (!(KNOWN_AGENT_TYPES as readonly string[]).includes(t)) throw new Error(`unknown agent type ${JSON.stringify(t)}; expected some of ${KNOWN_AGENT_TYPES.join(', ')}`)
      }
      return out as AgentType[]
    }
  }
}

/**
 * `uri=host,uri=host`: the address the console gateway reaches a VNC display at, for each libvirt URI whose
 * displays listen on a wildcard or loopback address. Split at the last `=` (a URI's query may hold one).
 */
function uriHostMap (doc: string): Setting<Readonly<Record<string, string>>> {
  return {
    doc,
    default: Object.freeze({}),
    parse (v) {
      const out: Record<string, string> = {}
      for (const item of v.split(',').map(s => s.trim()).filter(s => s !== '')) {
        const i = item.lastIndexOf('=')
        const uri = item.slice(0, i).trim()
        const host = item.slice(i + 1).trim()
        if (i <= 0 || uri === '' || host === '') throw new Error(`expected uri=host pairs separated by commas, got ${JSON.stringify(item)}`)
        if (!/^[A-Za-z0-9.:[\]_-]+$/.test(host)) throw new Error(`expected a host name or IP address after "=", got ${JSON.stringify(host)}`)
        out[uri] = host
      }
      return Object.freeze(out)
    }
  }
}

export const agentSettings = {
  ...commonSettings,
  ...metricsHostSettings,
  AGENTS_METRICS_PORT: int('port of the agents\' metrics listener (`/metrics`, `/healthz`, `/readyz`; 0: any free port, named in the ready line)', 9102, 0, 65535),
  ...secretKeySettings,
  ...consoleTransitKeySettings,
  AGENT_TYPES: agentTypes('agent types this process serves, comma separated (each consumes `<ns>.agent.<type>` and `<ns>.agent.<type>.interactive`)', ['kvm', 'ipmi', 'ovirt']),
  AGENT_HEARTBEAT_SECONDS: int('interval of the heartbeat each agents process writes into Redis (types, jobs in flight, last contact) for the dashboard; it counts as gone after three missed beats', 5, 1, 300),
  AGENT_PREFETCH: int('jobs each agent type handles at once in this process from each of its two queues (AMQP prefetch)', 16, 1, 1000),
  AGENT_STOP_GRACE_SECONDS: int('on SIGTERM, how long running actions may go on to finish and report before the process exits (seconds); one cut off leaves its job to end timed_out, as a redelivery never repeats it', 90, 0, 3600),
  KVM_CONSOLE_HOSTS: uriHostMap('`uri=host,…`: where the console gateway reaches VNC displays of a libvirt URI that listen on 127.0.0.1, 0.0.0.0 or `::` (default: the URI\'s host, or 127.0.0.1 for local URIs)'),
  ...kvmPolicySettings,
  KVM_SHUTDOWN_WAIT_MS: int('how long "shutdown" and "reboot" wait for a guest to power off after the ACPI request (milliseconds, bounded by the job deadline)', 60_000, 0, 3_600_000),
  KVM_CONNECTIONS_PER_URI: int('libvirt connections the kvm agent keeps open to each URI and uses in turn (libvirtd serves at most 5 calls of one connection at a time)', 4, 1, 32),
  KVM_POLL_MS: int('how often the kvm agent reads the domain state while waiting for it to change (milliseconds)', 250, 10, 10_000),
  IPMITOOL_PATH: str('the ipmitool binary the ipmi agent runs', 'ipmitool'),
  PATH: str('where the ipmi agent finds ipmitool and `stdbuf` (the process\'s own PATH): the one variable of this environment they are given, beside the BMC password', '/usr/bin:/bin'),
  IPMI_CIPHER_SUITE: int('IPMI v2 cipher suite used when a server record names none (`-C`)', 3, 0, 17),
  IPMI_MIN_INTERVAL_MS: int('minimum interval between two commands to one BMC (milliseconds; commands to one BMC also run one at a time per process)', 200, 0, 60_000),
  IPMI_POLL_MS: int('how often the ipmi agent reads the power state while confirming an action (milliseconds)', 1000, 50, 60_000),
  IPMI_SHUTDOWN_WAIT_MS: int('how long "shutdown" waits for a host to power off after the ACPI request (milliseconds, bounded by the job deadline)', 60_000, 0, 3_600_000),
  SOL_BRIDGE_HOST: str('address the ipmi agent\'s serial-over-LAN bridge listens on (the console gateway connects to it; served when AGENT_TYPES has ipmi); loopback by default: set `0.0.0.0` (behind a firewall) when the gateway runs on another host or container', '127.0.0.1'),
  SOL_BRIDGE_PORT: int('port of the serial-over-LAN bridge (0: any free port, announced to the gateway as bound)', 8082, 0, 65535),
  ...solBridgeSettings,
  SOL_BRIDGE_PUBLIC_HOST: str('the address the console gateway reaches this agent\'s serial-over-LAN bridge at', '127.0.0.1'),
  OVIRT_POLL_MS: int('how often the ovirt agent reads the VM state while confirming an action (milliseconds)', 1000, 50, 60_000),
  OVIRT_SHUTDOWN_WAIT_MS: int('how long "shutdown" waits for a VM to power off (milliseconds, bounded by the job deadline)', 60_000, 0, 3_600_000),
  POOL_OVERLAY_DIR: str('directory of kiosk clones\' qcow2 overlays (qemu must be able to read and write there); set it to keep kiosk pools in this agents process (with kvm in AGENT_TYPES); empty: no pools here', ''),
  POOL_HOOKS_DIR: str('directory of the executables kiosk pools may name as hooks (run on each new clone before it boots); empty: pools may name none', ''),
  POOL_HOOK_TIMEOUT_SECONDS: int('how long one pool hook may run before it is killed and its clone fails', 60, 1, 3600),
  POOL_LIBVIRT_URI: str('the libvirt URI of kiosk pool templates and clones (local: the overlays are files here)', 'qemu:///system'),
  POOL_RECONCILE_SECONDS: int('interval of the pool controller\'s reconcile against libvirt and the overlay directory (orphans removed, pools refilled); its lease runs out after three', 10, 1, 3600),
  POOL_DISCONNECT_GRACE_SECONDS: int('after a kiosk session\'s viewer disconnects, how long a reload may take to come back before the clone is destroyed', 10, 0, 600),
  POOL_CLAIM_TIMEOUT_SECONDS: int('a claimed clone whose console was not handed out within this long (the API died mid-hand-out) is destroyed', 120, 10, 3600),
  POOL_REFILL_CONCURRENCY: int('clones of one pool made at once', 2, 1, 32),
  QEMU_IMG_PATH: str('the qemu-img binary the pool controller runs', 'qemu-img'),
  UV_THREADPOOL_SIZE: optional('size of libuv\'s thread pool, where every libvirt call runs: read by Node itself as the process starts, so set it in the environment (64: scripts/start.mjs, the Dockerfile and the test stack do); the agents only warn when it is below 16'),
  OVIRT_TICKET_SECONDS: int('lifetime asked for oVirt console tickets (one-time VNC passwords); the gateway reconnects with it for the whole console session, so keep it at least the longest session', 7200, 30, 7200)
}

export type AgentsConfig = ConfigOf<typeof agentSettings>

/** Parses the environment; throws a ConfigError naming the first bad variable. */
export function readConfig (env: NodeJS.ProcessEnv = process.env): AgentsConfig {
  const c = loadConfig(agentSettings, env)
  // The bridge accepts only connections signed with this secret: without it, it would accept none.
  if (c.AGENT_TYPES.includes('ipmi') && c.SOL_BRIDGE_SECRET === undefined) throw new ConfigError('SOL_BRIDGE_SECRET', 'must be set when AGENT_TYPES has ipmi (`openssl rand -base64 32`, the same value for the console gateway)')
  kvmPolicyOf(c) // an allowed URI that could never be used stops the process here
  return c
}
