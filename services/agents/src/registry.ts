/**
 * The registry of agent types: each entry builds one driver from the configuration. Adding an agent type
 * (Redfish, Proxmox) is one module implementing `AgentDriver` and one line here.
 */
import type { AgentType } from '@porthole/contracts'
import { kvmPolicyOf } from '@porthole/shared/config'
import type { Logger } from '@porthole/shared/logging'
import type { Locks } from '@porthole/shared/store'
import type { AgentsConfig } from './config.js'
import type { DriverOf } from './driver.js'
import { loadKvmDriver } from './kvm/load.js'
import { createIpmiDriver } from './ipmi/index.js'
import type { SolTickets } from './ipmi/sol-tickets.js'
import { createOvirtDriver } from './ovirt/index.js'

export interface DriverDeps {
  config: AgentsConfig
  log: Logger
  /** Redis-backed locks and rate gates shared by every agent replica (e.g. a per-BMC command interval). */
  locks: Locks
  /** The serial-over-LAN bridge of this process, when it serves ipmi. */
  sol?: { tickets: SolTickets, port: () => number } | undefined
}

/** Builds agent type A's driver. May load its code on demand (kvm: the libvirt binding), and throw a ConfigError when it cannot. */
export type DriverFactory<A extends AgentType = AgentType> = (deps: DriverDeps) => DriverOf<A> | Promise<DriverOf<A>>

export const DRIVERS: { [A in AgentType]?: DriverFactory<A> } = {
  kvm: async ({ config, log }) => new (await loadKvmDriver())({
    consoleHosts: config.KVM_CONSOLE_HOSTS,
    shutdownWaitMs: config.KVM_SHUTDOWN_WAIT_MS,
    pollMs: config.KVM_POLL_MS,
    connectionsPerUri: config.KVM_CONNECTIONS_PER_URI,
    policy: kvmPolicyOf(config),
    log
  }),
  ipmi: ({ config, locks, sol }) => createIpmiDriver({
    sol: sol === undefined ? undefined : { tickets: sol.tickets, host: config.SOL_BRIDGE_PUBLIC_HOST, port: sol.port },
    locks, // the minimum interval per BMC holds across every agent replica
    ipmitool: config.IPMITOOL_PATH,
    searchPath: config.PATH,
    cipherSuite: config.IPMI_CIPHER_SUITE,
    minIntervalMs: config.IPMI_MIN_INTERVAL_MS,
    pollIntervalMs: config.IPMI_POLL_MS,
    shutdownWaitMs: config.IPMI_SHUTDOWN_WAIT_MS
  }),
  ovirt: ({ config }) => createOvirtDriver({
    pollIntervalMs: config.OVIRT_POLL_MS,
    shutdownWaitMs: config.OVIRT_SHUTDOWN_WAIT_MS,
    ticketSeconds: config.OVIRT_TICKET_SECONDS
  })
}
