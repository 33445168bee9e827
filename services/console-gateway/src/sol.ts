/**
 * The serial side of the gateway: a `sol` target is an agent's serial-over-LAN bridge (the agents alone run
 * ipmitool and hold BMC passwords). The gateway connects over TCP, sends `PORTHOLE-SOL <token>\n` with the
 * one-time bridge token from the target, and waits for the bridge's answer line: `OK\n` (then raw bytes of
 * the serial console both ways) or `ERR <reason>\n`. The token is never logged nor shown to the browser.
 */
import { connect, type Socket } from 'node:net'
import { AuthError, ConnectionError, TimeoutError } from '@porthole/shared/errors'

export interface SolTarget { host: string, port: number, password?: string | undefined }

export interface SolConnection {
  socket: Socket
  /** Serial bytes that arrived with the bridge's answer. */
  leftover: Buffer
}

/**
 * Connects to the bridge; rejects with ConnectionError (unreachable, refused, closed), AuthError (the BMC
 * refused the agent's credentials) or TimeoutError. The SOL session set-up includes a `sol deactivate`, so
 * the default timeout is generous.
 */
export async function connectSol (t: SolTarget, timeoutMs = 20_000): Promise<SolConnection> {
  if (t.password === undefined) throw new ConnectionError('the serial console target has no bridge token')
  const socket = connect({ host: t.host, port: t.port, noDelay: true })
  let buf = Buffer.alloc(0)
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
        const i = buf.indexOf(0x0a)
        if (i === -1) { if (buf.length > 256) fail(new ConnectionError('the serial console bridge answered something else')); return }
        const line = buf.subarray(0, i).toString('latin1').trim()
        const leftover = buf.subarray(i + 1)
        if (line === 'OK') { cleanup(); socket.pause(); resolve({ socket, leftover }); return }
        const reason = line.startsWith('ERR ') ? line.slice(4) : 'unexpected answer'
        fail(reason === 'auth'
          ? new AuthError('the BMC refused the agent\'s credentials for serial-over-LAN')
          : new ConnectionError(`the serial console bridge refused the session (${reason.slice(0, 40)})`))
      }
      const onError = (err: Error): void => fail(new ConnectionError('serial console bridge unreachable', err))
      const onClose = (): void => fail(new ConnectionError('the serial console bridge closed the connection'))
      socket.on('data', onData)
      socket.on('error', onError)
      socket.on('close', onClose)
      socket.write(`PORTHOLE-SOL ${t.password}\n`)
    })
  } catch (err) {
    socket.destroy()
    throw err
  }
}
