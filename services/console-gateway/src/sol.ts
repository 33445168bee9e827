/**
 * The serial side of the gateway: a `sol` target is an agent's serial-over-LAN bridge (the agents alone run
 * ipmitool and hold BMC passwords). The gateway connects over TCP and sends a hello signed with
 * SOL_BRIDGE_SECRET that carries the target's ticket and the console session's id (writeSolHello in
 * @porthole/shared/crypto). The bridge answers `CLAIMED\n` when it took the ticket (then the ticket is spent,
 * and its successor, which both sides derive, is the one for the session's next connection), then `OK\n`
 * (then raw bytes of the serial console both ways) or `ERR <reason>\n`; `ERR invalid\n` instead of `CLAIMED`
 * when the ticket is unknown, used, or its session ended. A bridge that does not accept the hello closes
 * without a word. Neither the ticket nor the secret is logged or shown to the browser.
 */
import { connect, type Socket } from 'node:net'
import { writeSolHello } from '@porthole/shared/crypto'
import { AuthError, ConnectionError, TimeoutError } from '@porthole/contracts/errors'

/** The bridge and the ticket to hand it (solTicketOf of a session's target). */
export interface SolTarget { host: string, port: number, ticket: string | undefined }

export interface SolConnection {
  socket: Socket
  /** Serial bytes that arrived with the bridge's answer. */
  leftover: Buffer
}

/** The bridge did not take the ticket: unknown, used already, or its session ended. */
export class SolTicketRefused extends ConnectionError {
  constructor () { super('the serial console bridge refused the ticket (unknown, used, or its session ended)') }
}

export interface SolHelloOptions {
  /** SOL_BRIDGE_SECRET, decoded. */
  secret: Buffer
  sessionId: string
  /** Called once the bridge took the ticket, with its successor (to keep for the session's next connection). */
  onClaimed: (next: string) => void
}

/**
 * Connects to the bridge; rejects with SolTicketRefused, ConnectionError (unreachable, refused, closed),
 * AuthError (the BMC refused the agent's credentials) or TimeoutError. The SOL session set-up includes a
 * `sol deactivate`, so the default timeout is generous.
 */
export async function connectSol (t: SolTarget, o: SolHelloOptions, timeoutMs = 20_000): Promise<SolConnection> {
  if (t.ticket === undefined) throw new ConnectionError('the serial console target has no bridge ticket')
  const hello = writeSolHello(o.secret, t.ticket, o.sessionId)
  const socket = connect({ host: t.host, port: t.port, noDelay: true })
  let buf = Buffer.alloc(0)
  let claimed = false
  try {
    return await new Promise<SolConnection>((resolve, reject) => {
      const timer = setTimeout(() => fail(new TimeoutError(`the serial console bridge did not answer within ${timeoutMs} ms`)), timeoutMs)
      const cleanup = (): void => {
        clearTimeout(timer)
        socket.off('data', onData)
        socket.off('error', onError)
        socket.off('close', onClose)
      }
      const fail = (err: Error): void => { cleanup(); reject(err) }
      const onData = (d: Buffer): void => {
        buf = Buffer.concat([buf, d])
        for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a)) {
          const line = buf.subarray(0, i).toString('latin1').trim()
          buf = buf.subarray(i + 1)
          if (line === 'CLAIMED' && !claimed) { claimed = true; o.onClaimed(hello.next); continue }
          if (line === 'OK' && claimed) { cleanup(); socket.pause(); resolve({ socket, leftover: buf }); return }
          const reason = line.startsWith('ERR ') ? line.slice(4) : 'unexpected answer'
          fail(reason === 'invalid' && !claimed
            ? new SolTicketRefused()
            : reason === 'auth'
              ? new AuthError('the BMC refused the agent\'s credentials for serial-over-LAN')
              : new ConnectionError(`the serial console bridge refused the session (${reason.slice(0, 40)})`))
          return
        }
        if (buf.length > 256) fail(new ConnectionError('the serial console bridge answered something else'))
      }
      const onError = (err: Error): void => fail(new ConnectionError('serial console bridge unreachable', err))
      const onClose = (): void => fail(new ConnectionError(claimed
        ? 'the serial console bridge closed the connection'
        : 'the serial console bridge closed the connection without an answer (is SOL_BRIDGE_SECRET the agents\' one, and the clocks in step?)'))
      socket.on('data', onData)
      socket.on('error', onError)
      socket.on('close', onClose)
      socket.write(hello.line)
    })
  } catch (err) {
    socket.destroy()
    throw err
  }
}
