/**
 * How a console WebSocket ends: the close code and reason the gateway sends for each way a viewer ends, which
 * the console page turns into a sentence and tests assert. The one definition: the gateway imports it, and so
 * does the console page, as the compiled file itself (plain data, no imports, so a browser loads it as is).
 *
 * 4000 invalid, 4001 expired, 4002 revoked, 4003 replaced (another viewer took the session), 4004 used (a
 * single-use link opened before), 4005 unreachable (the target did not answer), 4006 target-auth (the target
 * refused the password), 4007 idle, 4008 target-closed, 1001 shutdown, 1013 unavailable.
 */
export const CONSOLE_CLOSE = {
  invalid: { code: 4000, reason: 'invalid' },
  expired: { code: 4001, reason: 'expired' },
  revoked: { code: 4002, reason: 'revoked' },
  replaced: { code: 4003, reason: 'replaced' },
  used: { code: 4004, reason: 'used' },
  unreachable: { code: 4005, reason: 'unreachable' },
  targetAuth: { code: 4006, reason: 'target-auth' },
  idle: { code: 4007, reason: 'idle' },
  targetClosed: { code: 4008, reason: 'target-closed' },
  shutdown: { code: 1001, reason: 'shutdown' },
  unavailable: { code: 1013, reason: 'unavailable' }
} as const
export type ConsoleCloseKind = keyof typeof CONSOLE_CLOSE

/** The reason for a close code the gateway sends, or undefined for any other code. */
export function consoleCloseReason (code: number): string | undefined {
  for (const c of Object.values(CONSOLE_CLOSE)) if (c.code === code) return c.reason
  return undefined
}
