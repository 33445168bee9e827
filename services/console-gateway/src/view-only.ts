/**
 * View-only viewers, enforced here rather than trusted to their page: of what a view-only viewer's browser
 * sends after the RFB handshake, only the messages that drawing the screen takes reach the target
 * (SetPixelFormat, SetEncodings, FramebufferUpdateRequest, EnableContinuousUpdates, ClientFence); keys,
 * pointer, clipboard, resizing, xvp power requests and QEMU's own messages are dropped. A message this
 * parser cannot size ends the viewer (there would be no telling where the next one starts). Its ClientInit
 * always asks for a shared connection, so a watcher cannot push the owner off a target that honours it.
 */

/** RFB client → server message types (RFC 6143 and the community extensions noVNC speaks). */
const SET_PIXEL_FORMAT = 0
const SET_ENCODINGS = 2
const UPDATE_REQUEST = 3
const KEY_EVENT = 4
const POINTER_EVENT = 5
const CLIENT_CUT_TEXT = 6
const ENABLE_CONTINUOUS_UPDATES = 150
const CLIENT_FENCE = 248
const XVP = 250
const SET_DESKTOP_SIZE = 251
const QEMU = 255

/** Messages a view-only viewer may send. */
const PASSES = new Set([SET_PIXEL_FORMAT, SET_ENCODINGS, UPDATE_REQUEST, ENABLE_CONTINUOUS_UPDATES, CLIENT_FENCE])

/** The length of the message at the start of `b`: a number, 0 when more bytes are needed to tell, -1 when the type is unknown. */
function messageLength (b: Buffer): number {
  const type = b[0] as number
  const need = (n: number, f: () => number): number => b.length < n ? 0 : f()
  switch (type) {
    case SET_PIXEL_FORMAT: return 20
    case SET_ENCODINGS: return need(4, () => 4 + 4 * b.readUInt16BE(2))
    case UPDATE_REQUEST: return 10
    case KEY_EVENT: return 8
    case POINTER_EVENT: return 6
    // A negative length is the extended clipboard's: its size is the absolute value.
    case CLIENT_CUT_TEXT: return need(8, () => 8 + Math.abs(b.readInt32BE(4)))
    case ENABLE_CONTINUOUS_UPDATES: return 10
    case CLIENT_FENCE: return need(9, () => 9 + (b[8] as number))
    case XVP: return 4
    case SET_DESKTOP_SIZE: return need(8, () => 8 + 16 * (b[6] as number))
    case QEMU: return need(4, () => {
      const sub = b[1] as number
      if (sub === 0) return 12 // extended key event
      if (sub === 1) return b.readUInt16BE(2) === 2 ? 10 : 4 // audio: set format, or enable / disable
      return -1
    })
    default: return -1
  }
}

export class ViewOnlyFilter {
  private pending = Buffer.alloc(0)
  /** Messages dropped so far, by type (for the log and the tests). */
  readonly dropped = new Map<number, number>()

  /**
   * What of `chunk` may reach the target; undefined when the stream cannot be parsed (the viewer must go).
   * A message split across chunks passes (or not) once it is whole.
   */
  push (chunk: Buffer): Buffer | undefined {
    let b = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    const out: Buffer[] = []
    while (b.length > 0) {
      const n = messageLength(b)
      if (n < 0) return undefined
      if (n === 0 || b.length < n) break
      const type = b[0] as number
      if (PASSES.has(type)) out.push(b.subarray(0, n))
      else this.dropped.set(type, (this.dropped.get(type) ?? 0) + 1)
      b = b.subarray(n)
    }
    this.pending = Buffer.from(b)
    return out.length === 1 ? out[0] : Buffer.concat(out)
  }
}

/** A view-only viewer's ClientInit and what followed it: the shared flag set, the rest filtered. */
export function viewOnlyClientInit (f: ViewOnlyFilter, clientInit: Buffer): Buffer | undefined {
  if (clientInit.length === 0) return clientInit
  const rest = f.push(clientInit.subarray(1))
  return rest === undefined ? undefined : Buffer.concat([Buffer.from([1]), rest])
}
