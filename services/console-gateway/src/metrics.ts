/**
 * The console gateway's metrics: viewers open on this replica, the time from a console WebSocket's upgrade
 * to its first frame (the first message of at least FIRST_FRAME_BYTES sent to the browser: a framebuffer
 * update, an image instruction or the first screenful of a serial console's text), and the bytes relayed
 * each way. Counted on the WebSocket itself, so every protocol (VNC, guacamole, serial) is measured alike.
 */
import type { WebSocket, RawData } from 'ws'
import type { AmqpClient } from '@porthole/shared/amqp'
import { Counter, Gauge, durationHistogram, observeAmqp, observeRedis, serviceRegistry, type Registry } from '@porthole/shared/metrics'
import type { Redis } from '@porthole/shared/store'

/** Smaller messages (protocol handshakes, a cursor, a ping) are not frames. */
const FIRST_FRAME_BYTES = 256

export class GatewayMetrics {
  readonly registry: Registry
  private readonly firstFrame: ReturnType<typeof durationHistogram>
  private readonly bytes: Counter<'direction'>

  constructor (o: { redis: Redis[], amqp: AmqpClient, viewers: () => number }) {
    const registry = this.registry = serviceRegistry()
    new Gauge({ name: 'porthole_console_viewers_open', help: 'console viewers (WebSockets) open on this gateway replica', registers: [registry], collect () { this.set(o.viewers()) } })
    this.firstFrame = durationHistogram(registry, 'porthole_console_first_frame_seconds', 'time from a console WebSocket\'s upgrade to the first frame the gateway sends the browser', [])
    this.bytes = new Counter({ name: 'porthole_console_relay_bytes_total', help: 'console bytes relayed: to_browser (from the VNC server, guacd or the serial bridge) and from_browser', labelNames: ['direction'] as const, registers: [registry] })
    this.bytes.inc({ direction: 'to_browser' }, 0)
    this.bytes.inc({ direction: 'from_browser' }, 0)
    observeAmqp(registry, o.amqp, 'console-gateway')
    o.redis.forEach((r, i) => { observeRedis(registry, r, i === 0 ? 'console-gateway' : 'console-gateway-events') })
  }

  /** Counts what goes through a console WebSocket, from its upgrade on. */
  instrument (ws: WebSocket): void {
    const upgraded = performance.now()
    let framed = false
    const send = ws.send.bind(ws) as (data: unknown, ...rest: unknown[]) => void
    ws.send = ((data: unknown, ...rest: unknown[]) => {
      const n = size(data)
      this.bytes.inc({ direction: 'to_browser' }, n)
      if (!framed && n >= FIRST_FRAME_BYTES) { framed = true; this.firstFrame.observe((performance.now() - upgraded) / 1000) }
      send(data, ...rest)
    }) as typeof ws.send
    ws.on('message', (d: RawData) => { this.bytes.inc({ direction: 'from_browser' }, size(d)) })
  }
}

function size (d: unknown): number {
  if (typeof d === 'string') return Buffer.byteLength(d)
  if (Buffer.isBuffer(d) || d instanceof ArrayBuffer || ArrayBuffer.isView(d)) return d.byteLength
  if (Array.isArray(d)) return d.reduce((n: number, b: unknown) => n + size(b), 0)
  return 0
}
