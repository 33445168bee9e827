/**
 * The one interface every agent type implements. Adding Redfish or Proxmox later is one new module that
 * exports an `AgentDriver`, registered in `registry.ts`.
 *
 * Rules for drivers:
 * - Every power action returns the state it confirmed afterwards by asking the target (not an assumption).
 * - Expected outcomes are return values (`changed: false` for "on" when already on), not errors.
 * - Failures throw PortholeError subclasses from `@porthole/contracts/errors` with the classes
 *   `not_found`, `connection`, `auth`, `action`, `timeout`, `conflict`, `unsupported`.
 * - Every call honours `ctx.signal` (aborted at the job's deadline) and never outlives it.
 * - Secrets (`ctx.secrets`) never reach a log line or an error message.
 */
import type {
  AgentType, ConsoleJob, ConsoleProtocol, ConsoleTarget, Job, PowerAction, PowerJob, PowerStatus, ServerSecrets, StatusJob, StoredServer, StoredServerOf
} from '@porthole/contracts'
import type { Logger } from '@porthole/shared/logging'

/** What a driver call runs with: the job, its server (of the driver's agent type, its connection checked), secrets, deadline. */
export interface AgentContext<S extends StoredServer = StoredServer, J extends Job = Job> {
  /** The job being run (for console jobs, `job.console.ttlSeconds` is how long the target must stay usable). */
  job: J
  server: S
  /** The server's secrets, opened from `server.sealed` against the record's destinations. */
  secrets: ServerSecrets
  /** Aborted when the job's deadline passes. */
  signal: AbortSignal
  deadline: Date
  log: Logger
}

/** One agent type's driver: it receives only servers of its type, their connections already checked against its schema. */
export interface AgentDriver<S extends StoredServer = StoredServer> {
  readonly type: S['agent']
  // Method signatures, so that every DriverOf<A> is an AgentDriver: the runner hands each only servers of its type.
  power (ctx: AgentContext<S, PowerJob>, action: PowerAction): Promise<PowerStatus>
  status (ctx: AgentContext<S, StatusJob>): Promise<PowerStatus>
  /** Where the gateway should connect; ConflictError when the server is off or has no console. */
  consoleTarget (ctx: AgentContext<S, ConsoleJob>, protocol: ConsoleProtocol): Promise<ConsoleTarget>
  /** Releases connections; called once at shutdown. */
  close (): Promise<void>
}

/** The driver of agent type `A`. */
export type DriverOf<A extends AgentType> = AgentDriver<StoredServerOf<A>>
