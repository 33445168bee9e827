/**
 * Close policy: how the gateway ends a viewer's socket. Every way a viewer ends has its own close code (one
 * table, `CONSOLE_CLOSE` in the contracts, shared with the console page and the tests); a peer that does not
 * answer the close handshake is cut off rather than left holding its session.
 */
import type { WebSocket } from 'ws'
import { CONSOLE_CLOSE, type ConsoleCloseKind } from '@porthole/contracts'

export const CLOSE = CONSOLE_CLOSE
export type CloseKind = ConsoleCloseKind

/** How long a peer has to answer our close frame before its connection is cut. */
const CLOSE_HANDSHAKE_MS = 2000

export function closeWs (ws: WebSocket, kind: CloseKind): void {
  if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(CLOSE[kind].code, CLOSE[kind].reason)
  setTimeout(() => ws.terminate(), CLOSE_HANDSHAKE_MS).unref()
}
