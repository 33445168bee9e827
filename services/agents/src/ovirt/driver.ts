/**
 * The `ovirt` agent: VMs managed by an oVirt Engine (REST API v4).
 *
 * - Power state from `vm.status`: up, powering_up, reboot_in_progress, migrating → on; down → off;
 *   suspended, paused, saving_state → paused; anything else (wait_for_launch, powering_down, restoring_state,
 *   image_locked, not_responding, unknown, ...) → unknown. The raw status is in `detail`.
 * - Actions map to the engine's: on → start, off → stop, shutdown → shutdown, reboot → reboot,
 *   suspend → suspend, resume → start (the engine resumes a suspended or paused VM on start).
 *   reset has no engine action: it is stop, then start once the VM is down. reboot and reset of a VM that is
 *   down start it (as the ipmi agent does). Every action is confirmed by polling the VM until its state matches.
 * - Console: the VM's VNC graphics console (`?current=true` so that address and port are filled in) and a
 *   ticket (a one-time VNC password) asked for with the expiry we need: the longest console session, since
 *   the gateway connects again whenever the browser reconnects within the session.
 */
import type { ConsoleProtocol, ConsoleTarget, PowerAction, PowerState, PowerStatus, StoredOvirtServer } from '@porthole/contracts'
import { MAX_CONSOLE_TTL_SECONDS } from '@porthole/contracts'
import { ConflictError, ActionError, UnsupportedError } from '@porthole/contracts/errors'
import type { AgentContext, DriverOf } from '../driver.js'
import { pollUntil, powerStatus } from '../power.js'
import { OvirtClient, engineUrl, type Engine } from './client.js'

export interface OvirtDriverOptions {
  /** How often the VM is polled while an action is confirmed (OVIRT_POLL_INTERVAL_MS). */
  pollIntervalMs?: number
  /** How long "shutdown" waits for the guest to power off (OVIRT_SHUTDOWN_WAIT_MS; bounded by the deadline). */
  shutdownWaitMs?: number
  /** Lifetime asked for console tickets, in seconds (OVIRT_TICKET_SECONDS). */
  ticketSeconds?: number
}

/** VNC authentication uses the first 8 characters of a password; the engine's tickets are longer. */
const VNC_PASSWORD_LENGTH = 8

export function ovirtPowerState (status: string | undefined): PowerState {
  switch (status) {
    case 'up': case 'powering_up': case 'reboot_in_progress': case 'migrating': return 'on'
    case 'down': return 'off'
    case 'suspended': case 'paused': case 'saving_state': return 'paused'
    default: return 'unknown'
  }
}

/** A driver call's context: always an ovirt server. */
type Ctx = AgentContext<StoredOvirtServer>

export function createOvirtDriver (o: OvirtDriverOptions = {}): DriverOf<'ovirt'> {
  const client = new OvirtClient()
  const pollMs = o.pollIntervalMs ?? 1000
  const ticketSeconds = Math.min(o.ticketSeconds ?? MAX_CONSOLE_TTL_SECONDS, MAX_CONSOLE_TTL_SECONDS)

  /** The engine and VM of a server record (its connection checked against the ovirt schema by the runner: https only). */
  function target (ctx: Ctx): { engine: Engine, vmId: string } {
    const c = ctx.server.connection
    const engine: Engine = { url: engineUrl(c.url), username: c.username, password: ctx.secrets.connection?.password ?? '' }
    if (c.caCert !== undefined && c.caCert.trim() !== '') engine.caCert = c.caCert
    return { engine, vmId: c.vmId }
  }

  const vmPath = (vmId: string): string => `/vms/${encodeURIComponent(vmId)}`

  async function vmStatus (ctx: Ctx, engine: Engine, vmId: string): Promise<string> {
    const r = await client.api(engine, 'GET', vmPath(vmId), undefined, ctx.signal)
    if (r.status !== 200) throw OvirtClient.fail(engine, r, `oVirt VM ${vmId}`)
    const status = (r.body as { status?: unknown } | undefined)?.status
    return typeof status === 'string' ? status : 'unknown'
  }

  async function act (ctx: Ctx, engine: Engine, vmId: string, action: 'start' | 'stop' | 'shutdown' | 'reboot' | 'suspend'): Promise<void> {
    ctx.log.info({ vmId, engineAction: action }, 'ovirt action')
    const r = await client.api(engine, 'POST', `${vmPath(vmId)}/${action}`, {}, ctx.signal)
    if (r.status !== 200 && r.status !== 201 && r.status !== 202) throw OvirtClient.fail(engine, r, `oVirt VM ${vmId}`)
    const state = (r.body as { status?: unknown } | undefined)?.status
    if (state === 'failed') throw new ActionError(`oVirt engine reported the ${action} of VM ${vmId} as failed`)
  }

  /** Polls until `ok(status)`; TimeoutError when the deadline (less a margin) comes first. */
  async function confirm (ctx: Ctx, engine: Engine, vmId: string, ok: (status: string) => boolean, what: string, waitMs?: number): Promise<string> {
    return await pollUntil(ctx, { read: async () => await vmStatus(ctx, engine, vmId), ok, pollMs, waitMs, failure: (s, when) => `${what}: VM ${vmId} was still ${s} ${when}` })
  }

  const result = (status: string, changed: boolean, detail?: string): PowerStatus =>
    powerStatus(ovirtPowerState(status), { changed, detail: detail ?? `vm status: ${status}` })

  const isOn = (s: string): boolean => ovirtPowerState(s) === 'on'
  const isOff = (s: string): boolean => s === 'down'

  async function start (ctx: Ctx, e: Engine, vmId: string, detail?: string): Promise<PowerStatus> {
    await act(ctx, e, vmId, 'start')
    return result(await confirm(ctx, e, vmId, isOn, 'start'), true, detail)
  }

  return {
    type: 'ovirt',

    async power (ctx, action: PowerAction) {
      const { engine: e, vmId } = target(ctx)
      const now = await vmStatus(ctx, e, vmId)
      const state = ovirtPowerState(now)
      switch (action) {
        case 'on':
          if (state === 'on') return result(now, false)
          return await start(ctx, e, vmId)
        case 'resume':
          if (state === 'on') return result(now, false)
          if (state === 'off') throw new ConflictError(`VM ${vmId} is down, not suspended: use "on" to start it`)
          return await start(ctx, e, vmId)
        case 'off':
          if (isOff(now)) return result(now, false)
          await act(ctx, e, vmId, 'stop')
          return result(await confirm(ctx, e, vmId, isOff, 'stop'), true)
        case 'shutdown':
          if (isOff(now)) return result(now, false)
          await act(ctx, e, vmId, 'shutdown')
          return result(await confirm(ctx, e, vmId, isOff, 'shutdown', o.shutdownWaitMs ?? 60_000), true)
        case 'suspend':
          if (now === 'suspended') return result(now, false)
          if (state !== 'on') throw new ConflictError(`VM ${vmId} is ${now}: only a running VM can be suspended`)
          await act(ctx, e, vmId, 'suspend')
          return result(await confirm(ctx, e, vmId, s => s === 'suspended', 'suspend'), true)
        case 'reboot':
          if (isOff(now)) return await start(ctx, e, vmId, 'was down: started')
          await act(ctx, e, vmId, 'reboot')
          return result(await confirm(ctx, e, vmId, isOn, 'reboot'), true)
        case 'reset':
          if (isOff(now)) return await start(ctx, e, vmId, 'was down: started')
          // No hard reset in the engine's API: a hard stop, then a start.
          await act(ctx, e, vmId, 'stop')
          await confirm(ctx, e, vmId, isOff, 'reset (stop)')
          return await start(ctx, e, vmId, 'reset as stop and start')
      }
    },

    async status (ctx) {
      const { engine, vmId } = target(ctx)
      return result(await vmStatus(ctx, engine, vmId), false)
    },

    async consoleTarget (ctx, protocol: ConsoleProtocol): Promise<ConsoleTarget> {
      if (protocol === 'serial') throw new UnsupportedError('serial consoles are offered for ipmi servers only')
      const { engine: e, vmId } = target(ctx)
      const now = await vmStatus(ctx, e, vmId)
      if (ovirtPowerState(now) !== 'on') throw new ConflictError(`VM ${vmId} is ${now}: a console needs a running VM`)
      const r = await client.api(e, 'GET', `${vmPath(vmId)}/graphicsconsoles?current=true`, undefined, ctx.signal)
      if (r.status !== 200) throw OvirtClient.fail(e, r, `oVirt VM ${vmId}`)
      // An empty list arrives as {} (a quirk of the engine's JSON), a list as {"graphics_console": [...]}.
      const list = (r.body as { graphics_console?: unknown } | undefined)?.graphics_console
      const consoles = Array.isArray(list) ? list as Array<Record<string, unknown>> : []
      const vnc = consoles.find(c => c.protocol === 'vnc')
      if (vnc === undefined || typeof vnc.id !== 'string') {
        throw new ConflictError(consoles.length === 0 ? `VM ${vmId} has no graphics console` : `VM ${vmId} has no VNC console (only ${consoles.map(c => String(c.protocol)).join(', ')})`)
      }
      const address = typeof vnc.address === 'string' ? vnc.address : ''
      const port = Number(vnc.port)
      if (address === '' || !Number.isInteger(port) || port < 1 || port > 65535) throw new ConflictError(`VM ${vmId}'s VNC console has no address yet`)
      const t = await client.api(e, 'POST', `${vmPath(vmId)}/graphicsconsoles/${encodeURIComponent(vnc.id)}/ticket`, { ticket: { expiry: String(Math.min(ticketSeconds, ctx.job.console.ttlSeconds)) } }, ctx.signal)
      if (t.status !== 200) throw OvirtClient.fail(e, t, `oVirt VM ${vmId}`)
      const value = (t.body as { ticket?: { value?: unknown } } | undefined)?.ticket?.value
      if (typeof value !== 'string' || value === '') throw new ActionError(`oVirt engine returned no console ticket for VM ${vmId}`)
      return { kind: 'vnc', host: address, port, password: value.slice(0, VNC_PASSWORD_LENGTH) }
    },

    async close () { await client.close() }
  }
}
