/**
 * Wires the gateway: Redis (sessions, and a second connection for their events), RabbitMQ (the mint
 * queue, and results), the viewer hub, guacamole-lite, and the HTTP server.
 */
import type { AddressInfo } from 'node:net'
import { AmqpClient } from '@porthole/shared/amqp'
import { ConfigError } from '@porthole/shared/config'
import { SecretBox } from '@porthole/shared/crypto'
import type { Logger } from '@porthole/shared/logging'
import { serveMetrics } from '@porthole/shared/metrics'
import { AuditLog, ConsoleSessionStore, ConsoleShareStore, createRedis } from '@porthole/shared/store'
import { allowedOrigins, type GatewayConfig } from './config.js'
import { GuacBridge } from './guac.js'
import { sweepExpiredSessions } from './expiry.js'
import { createHttp } from './http.js'
import { GatewayMetrics } from './metrics.js'
import { Minter } from './minter.js'
import { ViewerHub } from './viewers.js'

export interface Gateway {
  /** The port the HTTP server listens on. */
  port: number
  /** The port of the metrics listener. */
  metricsPort: number
  close: () => Promise<void>
}

export async function startGateway (c: GatewayConfig, log: Logger): Promise<Gateway> {
  const transitBox = SecretBox.forConsoleTransit(c)
  const consoleBox = SecretBox.fromSettings(
    { PORTHOLE_SECRET_KEY: c.CONSOLE_KEY, PORTHOLE_SECRET_KEY_ID: c.CONSOLE_KEY_ID, PORTHOLE_OLD_SECRET_KEYS: c.CONSOLE_OLD_KEYS },
    { key: 'CONSOLE_KEY', old: 'CONSOLE_OLD_KEYS' }
  )
  // The console key must be the gateway's alone: if it equalled the transit key, every agent could open it.
  if (c.CONSOLE_KEY === c.CONSOLE_TRANSIT_KEY) throw new ConfigError('CONSOLE_KEY', 'must differ from CONSOLE_TRANSIT_KEY')

  const redis = createRedis(c.REDIS_URL, log, 'console-gateway')
  const subscriber = createRedis(c.REDIS_URL, log, 'console-gateway-events')
  const sessions = new ConsoleSessionStore(redis, c.PORTHOLE_NAMESPACE)
  const shares = new ConsoleShareStore(redis, c.PORTHOLE_NAMESPACE)
  const amqp = new AmqpClient({ url: c.RABBITMQ_URL, namespace: c.PORTHOLE_NAMESPACE, log, name: 'console-gateway' })
  const cleanup = async (): Promise<void> => {
    await amqp.close().catch(() => {})
    redis.disconnect()
    subscriber.disconnect()
  }
  try {
    await amqp.start()
    const guac = new GuacBridge(Buffer.from(c.CONSOLE_KEY, 'base64'), { host: c.GUACD_HOST, port: c.GUACD_PORT }, log)
    const solSecret = c.SOL_BRIDGE_SECRET === undefined ? undefined : Buffer.from(c.SOL_BRIDGE_SECRET, 'base64')
    const hub = new ViewerHub({ sessions, shares, consoleBox, guac, subscriber, idleSeconds: c.CONSOLE_IDLE_SECONDS, pingSeconds: c.CONSOLE_PING_SECONDS, resumeGraceSeconds: c.CONSOLE_RESUME_GRACE_SECONDS, solSecret, log })
    await hub.start()
    if (solSecret === undefined) log.warn('SOL_BRIDGE_SECRET is not set: serial consoles are not served')
    const minter = new Minter({ amqp, sessions, transitBox, consoleBox, namespace: c.PORTHOLE_NAMESPACE, publicUrl: c.PUBLIC_GATEWAY_URL, serial: solSecret !== undefined, log })
    await minter.start()
    const metrics = new GatewayMetrics({ redis: [redis, subscriber], amqp, viewers: () => hub.count })
    const server = createHttp({
      hub,
      sessions,
      shares,
      audit: new AuditLog(redis, c.PORTHOLE_NAMESPACE, c.AUDIT_RETENTION_DAYS),
      allowedOrigins: allowedOrigins(c),
      frameAncestors: c.CONSOLE_FRAME_ANCESTORS,
      publicUrl: c.PUBLIC_GATEWAY_URL,
      trustProxy: c.TRUST_PROXY,
      healthy: () => amqp.connected && redis.status === 'ready',
      instrument: (ws) => { metrics.instrument(ws) },
      log
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(c.GATEWAY_PORT, c.GATEWAY_HOST, () => { server.off('error', reject); resolve() })
    })
    const stopSweep = sweepExpiredSessions(redis, c.PORTHOLE_NAMESPACE, sessions, log.child({ component: 'expiry' }))
    const listener = await serveMetrics({ host: c.METRICS_HOST, port: c.GATEWAY_METRICS_PORT, registry: metrics.registry, ready: () => amqp.connected && redis.status === 'ready', log })
    return {
      port: (server.address() as AddressInfo).port,
      metricsPort: listener.port,
      close: async () => {
        await stopSweep()
        await listener.close()
        const closed = new Promise<void>(resolve => server.close(() => resolve()))
        hub.closeAll('shutdown')
        server.closeIdleConnections()
        await amqp.close()
        await Promise.race([closed, new Promise(resolve => setTimeout(resolve, 3000).unref())])
        server.closeAllConnections()
        await redis.quit().catch(() => {})
        await subscriber.quit().catch(() => {})
      }
    }
  } catch (err) {
    await cleanup()
    throw err
  }
}
