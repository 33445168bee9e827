/**
 * The `ipmi` agent: power control of a physical server through its BMC with ipmitool over IPMI v2 (lanplus).
 *
 * Behaviour worth knowing:
 * - Every action reads the power state first and confirms the result by polling it again, so the returned
 *   state is what the BMC says, not an assumption. The confirmation ends at the job's deadline (less a margin).
 * - "on" never cycles a running host (`changed: false`); "off" and "shutdown" of a host that is off are
 *   `changed: false` too.
 * - IPMI has no graceful reboot: "reboot" and "reset" both send `chassis power reset`. When the host is off
 *   they power it on instead (a reset of a powered-off chassis does nothing on most BMCs and fails on others;
 *   whoever asks for a reboot wants the host running afresh, which is also what Ironic does).
 * - "shutdown" sends `chassis power soft` (an ACPI power-button press) and waits until the host is off.
 * - "suspend" and "resume" do not exist in IPMI: UnsupportedError.
 * - Errors: refused credentials → AuthError (never retried); no answer → ConnectionError, retried with
 *   backoff while the deadline allows; anything else the BMC says → ActionError.
 */
import type { ConsoleProtocol, ConsoleTarget, PowerAction, PowerState, PowerStatus, StoredIpmiServer } from '@porthole/contracts'
import { ActionError, ConflictError, ConnectionError, TimeoutError, UnsupportedError } from '@porthole/contracts/errors'
import type { Locks } from '@porthole/shared/store'
import type { AgentContext, DriverOf } from '../driver.js'
import { sleep } from '@porthole/shared/async'
import { pollUntil, powerStatus } from '../power.js'
import { BmcGate } from './bmc-gate.js'
import { NO_SESSION, runIpmitool, type Bmc } from './ipmitool.js'
import type { SolTickets } from './sol-tickets.js'

export interface IpmiDriverOptions {
  /** Minimum interval between two commands to one BMC (IPMI_MIN_INTERVAL_MS). */
  minIntervalMs: number
  /** How often the power state is polled while an action is confirmed (IPMI_POLL_INTERVAL_MS). */
  pollIntervalMs?: number
  /** Default cipher suite when the server record names none (IPMI_CIPHER_SUITE). */
  cipherSuite?: number
  /** How long "shutdown" waits for the host to power off after the ACPI request (IPMI_SHUTDOWN_WAIT_MS; bounded by the deadline). */
  shutdownWaitMs?: number
  /** The ipmitool binary (IPMITOOL_PATH). */
  ipmitool?: string
  /** The PATH it runs with (the agents' PATH setting). */
  searchPath?: string
  /** Redis-backed rate gate shared by agent replicas; optional. */
  locks?: Locks | undefined
  /** The serial-over-LAN bridge (`serial` consoles); without it `serial` is unsupported. */
  sol?: {
    tickets: SolTickets
    /** Where the console gateway reaches the bridge (SOL_BRIDGE_PUBLIC_HOST and the bridge's port). */
    host: string
    port: () => number
  } | undefined
}

/** A single ipmitool attempt: -N 1 -R 1 gives up on a silent BMC after about 2 s. */
const PACKET_TIMEOUT_S = 1
const RETRANSMITS = 1
const ATTEMPT_BUDGET_MS = 2500
const MAX_ATTEMPTS = 4
const DEFAULT_PORT = 623
const DEFAULT_VNC_PORT = 5900

/** Commands that can be repeated without effect when we cannot tell whether the first one arrived. */
const IDEMPOTENT = new Set(['status', 'on', 'off'])

/** A driver call's context: always an ipmi server. */
type Ctx = AgentContext<StoredIpmiServer>

export function createIpmiDriver (o: IpmiDriverOptions): DriverOf<'ipmi'> {
  const gate = new BmcGate({ minIntervalMs: o.minIntervalMs, locks: o.locks })
  const pollMs = o.pollIntervalMs ?? 1000
  const ipmitool = o.ipmitool ?? 'ipmitool'

  /** The BMC of a server record (its connection checked against the ipmi schema by the runner). */
  function bmcOf (ctx: Ctx): Bmc {
    const c = ctx.server.connection
    return { host: c.host, port: c.port ?? DEFAULT_PORT, username: c.username, password: ctx.secrets.connection?.password ?? '', cipherSuite: c.cipherSuite ?? o.cipherSuite ?? 3 }
  }

  /** One command, serialised per BMC, retried on connection errors while the deadline allows. */
  async function ipmi (ctx: Ctx, bmc: Bmc, kind: string, command: string[]): Promise<string> {
    const key = `${bmc.host}:${bmc.port}`
    let backoff = 250
    for (let attempt = 1; ; attempt++) {
      const left = ctx.deadline.getTime() - Date.now()
      if (left <= 0 || ctx.signal.aborted) throw new TimeoutError(`no result from BMC ${key} by the job's deadline`)
      try {
        const r = await gate.run(key, ctx.signal, async () => await runIpmitool(bmc, command, {
          ipmitool, searchPath: o.searchPath, signal: ctx.signal, timeoutMs: 15_000, packetTimeoutS: PACKET_TIMEOUT_S, retransmits: RETRANSMITS
        }))
        return r.stdout
      } catch (err) {
        if (!(err instanceof ConnectionError)) throw err
        const safe = IDEMPOTENT.has(kind) || (err as unknown as Record<symbol, unknown>)[NO_SESSION] === true
        const remaining = ctx.deadline.getTime() - Date.now() - backoff
        if (!safe || attempt >= MAX_ATTEMPTS || remaining < ATTEMPT_BUDGET_MS) throw err
        ctx.log.warn({ bmc: key, command: command.join(' '), attempt, err: { message: err.message } }, 'ipmi command failed, retrying')
        await sleep(backoff, ctx.signal)
        backoff *= 2
      }
    }
  }

  async function readPower (ctx: Ctx, bmc: Bmc): Promise<PowerState> {
    const out = await ipmi(ctx, bmc, 'status', ['chassis', 'power', 'status'])
    const m = /Chassis Power is (on|off)/i.exec(out)
    return m === null ? 'unknown' : (m[1]!.toLowerCase() as 'on' | 'off')
  }

  /** Polls until the power state is `want`; TimeoutError when the deadline (less a margin) comes first. */
  async function confirm (ctx: Ctx, bmc: Bmc, want: 'on' | 'off', what: string, waitMs?: number): Promise<void> {
    await pollUntil(ctx, { read: async () => await readPower(ctx, bmc), ok: p => p === want, pollMs, waitMs, failure: (_p, when) => `${what}: the host was not ${want} ${when}` })
  }

  const result = (power: PowerState, changed: boolean, detail?: string): PowerStatus => powerStatus(power, { changed, detail })

  async function setPower (ctx: Ctx, bmc: Bmc, kind: string, want: 'on' | 'off', command: string, detail?: string): Promise<PowerStatus> {
    await ipmi(ctx, bmc, kind, ['chassis', 'power', command])
    await confirm(ctx, bmc, want, `chassis power ${command}`, command === 'soft' ? (o.shutdownWaitMs ?? 60_000) : undefined)
    return result(want, true, detail)
  }

  return {
    type: 'ipmi',

    async power (ctx, action: PowerAction) {
      if (action === 'suspend' || action === 'resume') throw new UnsupportedError(`IPMI has no ${action}`)
      const bmc = bmcOf(ctx)
      const now = await readPower(ctx, bmc)
      if (now === 'unknown') throw new ActionError(`BMC ${bmc.host}:${bmc.port} did not report a power state`)
      const log = ctx.log.child({ bmc: `${bmc.host}:${bmc.port}`, action })
      switch (action) {
        case 'on':
          if (now === 'on') return result('on', false)
          return await setPower(ctx, bmc, 'on', 'on', 'on')
        case 'off':
          if (now === 'off') return result('off', false)
          return await setPower(ctx, bmc, 'off', 'off', 'off')
        case 'shutdown':
          if (now === 'off') return result('off', false)
          return await setPower(ctx, bmc, 'soft', 'off', 'soft')
        case 'reboot':
        case 'reset':
          if (now === 'off') {
            log.info('host is off: powering on instead of resetting')
            return await setPower(ctx, bmc, 'on', 'on', 'on', 'was off: powered on')
          }
          // A reset keeps the chassis powered: the confirmation is that it is still (or again) on.
          return await setPower(ctx, bmc, 'reset', 'on', 'reset', action === 'reboot' ? 'IPMI has no graceful reboot: hard reset' : undefined)
      }
    },

    async status (ctx) {
      return result(await readPower(ctx, bmcOf(ctx)), false)
    },

    async consoleTarget (ctx, protocol: ConsoleProtocol): Promise<ConsoleTarget> {
      if (protocol === 'serial') {
        // Serial-over-LAN through this process's bridge: the gateway gets a single-use ticket for it, never the
        // BMC's credentials. It works whatever the host's power state (a customer can watch it boot).
        if (o.sol === undefined) throw new UnsupportedError('serial consoles are not served by this agent')
        const bmc = bmcOf(ctx)
        let token: string
        try {
          token = await o.sol.tickets.register(bmc, ctx.job.console.ttlSeconds, ctx.job.id)
        } catch (err) {
          throw new ConnectionError('the serial console ticket could not be stored', err)
        }
        // The ticket under its own name only: it is not a password, and nothing else goes beside it.
        return { kind: 'sol', host: o.sol.host, port: o.sol.port(), ticket: token }
      }
      // The BMC's own VNC server (iDRAC, iLO, Supermicro): it works whatever the host's power state, so that
      // a customer can watch the host boot.
      const c = ctx.server.console
      if (c?.host === undefined || c.host === '') throw new ConflictError('this server has no console endpoint configured')
      const target: ConsoleTarget = { kind: 'vnc', host: c.host, port: c.port ?? DEFAULT_VNC_PORT }
      const password = ctx.secrets.console?.password
      if (password !== undefined && password !== '') target.password = password
      return target
    },

    async close () {}
  }
}
