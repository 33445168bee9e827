/**
 * A TCP proxy on loopback that a test controls: `cut()` drops every open connection (as a broker restart
 * does), `refuse()` makes new connections fail until `accept()`. Lets a test break the path to a real service
 * without disturbing that service for anyone else.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'

export interface TcpProxy {
  port: number
  /** The target URL with host and port replaced by the proxy's. */
  url: (target: string) => string
  cut: () => void
  /** Stops forwarding in both directions while keeping the connections open (a broker that hangs). */
  freeze: () => void
  refuse: () => void
  accept: () => void
  connections: () => number
  close: () => Promise<void>
}

export async function tcpProxy (targetHost: string, targetPort: number): Promise<TcpProxy> {
  const open = new Set<Socket>()
  let refusing = false
  let frozen = false
  const server: Server = createServer((client) => {
    if (refusing) { client.destroy(); return }
    const upstream = connect({ host: targetHost, port: targetPort })
    client.setNoDelay(true); upstream.setNoDelay(true)
    open.add(client); open.add(upstream)
    const drop = (): void => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream) }
    client.on('error', drop); upstream.on('error', drop)
    client.on('close', drop); upstream.on('close', drop)
    client.on('data', (b: Buffer) => { if (!frozen) upstream.write(b) })
    upstream.on('data', (b: Buffer) => { if (!frozen) client.write(b) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return {
    port,
    url: (target) => { const u = new URL(target); u.hostname = '127.0.0.1'; u.port = String(port); return u.toString() },
    cut: () => { for (const s of open) s.destroy(); open.clear() },
    freeze: () => { frozen = true },
    refuse: () => { refusing = true },
    accept: () => { refusing = false },
    connections: () => open.size / 2,
    close: async () => {
      for (const s of open) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
