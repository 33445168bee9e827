import { Type, type Static } from '@sinclair/typebox'
import { Timestamp } from './common.js'

/** Lifecycle actions, the same for every agent type. */
export const POWER_ACTIONS = ['on', 'off', 'shutdown', 'reboot', 'reset', 'suspend', 'resume'] as const
export const PowerAction = Type.Union(POWER_ACTIONS.map(a => Type.Literal(a)), { description: 'on: start; off: hard power off; shutdown: ACPI; reboot: ACPI reboot; reset: hard reset; suspend/resume: pause and continue' })
export type PowerAction = typeof POWER_ACTIONS[number]

/** A server's power state as the agent reads it from the hypervisor, BMC or engine. */
export const POWER_STATES = ['on', 'off', 'paused', 'unknown'] as const
export const PowerState = Type.Union(POWER_STATES.map(s => Type.Literal(s)))
export type PowerState = typeof POWER_STATES[number]

/** Result of a status job, and of every power job (the state confirmed after the action). */
export const PowerStatus = Type.Object({
  power: PowerState,
  checkedAt: Timestamp,
  /** Set when the action had nothing to do (e.g. "on" for a running server). */
  changed: Type.Optional(Type.Boolean()),
  detail: Type.Optional(Type.String({ maxLength: 200 }))
}, { additionalProperties: false })
export type PowerStatus = Static<typeof PowerStatus>
