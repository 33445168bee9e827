/**
 * The one interface every agent type implements. Adding Redfish or Proxmox later is one new module that
 * exports an `AgentDriver`, registered in `registry.ts`.
 *
 * Rules for drivers:
 * - Every power action returns the state it confirmed afterwards by asking the target (not an assumption).
 * - Expected outcomes are return values (`changed: false` for "on" when already on), not errors.
 * - Failures throw PortholeError subclasses from `@porthole/shared/errors` with the classes
 *   `not_found`, `connection`, `auth`, `action`, `timeout`, `conflict`, `unsupported`.
 * - Every call honours `ctx.signal` (aborted at the job's deadline) and never outlives it.
 * - Secrets (`ctx.secrets`) never reach a log line or an error message.
 */
import type { ConsoleProtocol, ConsoleTarget, Job, PowerAction, PowerStatus, ServerSecrets, StoredServer } from '@porthole/shared/contracts'
import type { Logger } from '@porthole/shared/logging'

export interface AgentContext {
  /** The job being run (for console jobs, `job.console.ttlSeconds` is how long the target must stay usable). */
  job: Job
  server: StoredServer
  /** The server's secrets, opened from `server.sealed` against the record's destinations. */
  secrets: ServerSecrets
  /** Aborted when the job's deadline passes. */
  signal: AbortSignal
  deadline: Date
  log: Logger
}

export interface AgentDriver {
  readonly type: 'kvm' | 'ipmi' | 'ovirt'
  power: (ctx: AgentContext, action: PowerAction) => Promise<PowerStatus>
  status: (ctx: AgentContext) => Promise<PowerStatus>
  /** Where the gateway should connect; ConflictError when the server is off or has no console. */
  consoleTarget: (ctx: AgentContext, protocol: ConsoleProtocol) => Promise<ConsoleTarget>
  /** Releases connections; called once at shutdown. */
  close: () => Promise<void>
}
