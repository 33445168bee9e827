/**
 * One socket write per turn of the event loop instead of one per AMQP frame.
 *
 * amqplib writes every frame of every channel to the socket on its own (its muxer calls `socket.write` once per
 * frame, on a setImmediate). Node sends each such write to the kernel at once, and on loopback one TCP write
 * also runs the receiving side's network stack: the profiles of the console bench put these writes at 15–20 % of
 * the receiver's and the agents' CPU (issue #13). Corked until the end of the current turn, the frames written
 * meanwhile (acks, publishes and their confirms' frames, several deliveries' worth under load) leave in one
 * `writev`. Nothing waits longer: the socket is uncorked on `process.nextTick`, before any I/O is polled.
 */
import type { Writable } from 'node:stream'

const COALESCED = Symbol('porthole.coalesced')

/** Coalesces the writes made to `s` within one turn of the event loop into one (see above). Idempotent. */
export function coalesceWrites (s: Writable): void {
  const marked = s as Writable & { [COALESCED]?: true }
  if (marked[COALESCED] === true) return
  marked[COALESCED] = true
  const write = s.write
  let corked = false
  const uncork = (): void => {
    corked = false
    s.uncork()
  }
  s.write = function (this: Writable, ...args: Parameters<Writable['write']>): boolean {
    if (!corked && !s.destroyed) {
      corked = true
      s.cork()
      process.nextTick(uncork)
    }
    return write.apply(this, args)
  } as Writable['write']
}

/**
 * The socket under an amqplib connection (`ChannelModel.connection.stream`), or undefined when this amqplib
 * keeps it elsewhere: then writes are simply not coalesced (a test checks that they are with the pinned version).
 */
export function amqpSocket (model: unknown): Writable | undefined {
  const stream = (model as { connection?: { stream?: unknown } } | undefined)?.connection?.stream
  if (typeof stream !== 'object' || stream === null) return undefined
  const w = stream as Partial<Writable>
  return typeof w.write === 'function' && typeof w.cork === 'function' && typeof w.uncork === 'function' ? stream as Writable : undefined
}
