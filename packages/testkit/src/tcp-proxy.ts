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

export interface TcpBalancer {
  port: number
  url: string
  /** Connections open now through the balancer to each backend port. */
  connectionsTo: (backendPort: number) => number
  close: () => Promise<void>
}

/**
 * A load balancer in front of several replicas (TCP, so WebSockets pass as they are): each new connection
 * goes to the next backend in turn, and to the one after when that one refuses (a replica that died), as a
 * load balancer with health checks would. A backend's connections end with it.
 */
export async function tcpBalancer (backendPorts: number[], host = '127.0.0.1'): Promise<TcpBalancer> {
  const open = new Map<number, Set<Socket>>(backendPorts.map(p => [p, new Set()]))
  let next = 0
  const server: Server = createServer((client) => {
    client.pause()
    client.setNoDelay(true)
    const tryFrom = (tries: number): void => {
      if (tries >= backendPorts.length || client.destroyed) { client.destroy(); return }
      const port = backendPorts[next++ % backendPorts.length] as number
      const upstream = connect({ host, port })
      upstream.once('error', () => { upstream.destroy(); tryFrom(tries + 1) })
      upstream.once('connect', () => {
        upstream.removeAllListeners('error')
        upstream.setNoDelay(true)
        const set = open.get(port) as Set<Socket>
        set.add(upstream)
        const drop = (): void => { client.destroy(); upstream.destroy(); set.delete(upstream) }
        client.on('error', drop); upstream.on('error', drop)
        client.on('close', drop); upstream.on('close', drop)
        client.pipe(upstream)
        upstream.pipe(client)
        client.resume()
      })
    }
    tryFrom(0)
  })
  await new Promise<void>(resolve => server.listen(0, host, resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return {
    port,
    url: `http://${host}:${port}`,
    connectionsTo: (p) => open.get(p)?.size ?? 0,
    close: async () => {
      for (const set of open.values()) for (const s of set) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
