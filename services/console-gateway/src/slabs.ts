/**
 * Memory for VNC bytes on their way to browsers, recycled. The target sockets read into one shared buffer
 * (see connectVnc); each read is copied into the current slab, and a slab whose every chunk the browser's
 * socket has taken (the send callback) is filled again, or kept for later. A full-screen stream thus runs on a
 * few slabs instead of a fresh buffer per read, which the garbage collector freed only by full collections.
 * One pool per viewer hub (a gateway), not per process.
 */
const SLAB_BYTES = 1024 * 1024
const SPARE_SLABS = 8

export interface Slab { buf: Buffer, used: number, live: number }

export class SlabPool {
  private readonly spare: Slab[] = []
  private current: Slab | undefined

  /** A copy of `view` in the current slab (the slab is counted as in use until `release`). */
  copy (view: Buffer): [Buffer, Slab | undefined] {
    if (view.length > SLAB_BYTES) return [Buffer.from(view), undefined]
    let s = this.current
    if (s === undefined || s.buf.length - s.used < view.length) {
      if (s !== undefined && s.live === 0) s.used = 0
      else this.current = s = this.spare.pop() ?? { buf: Buffer.allocUnsafe(SLAB_BYTES), used: 0, live: 0 }
    }
    view.copy(s.buf, s.used)
    const chunk = s.buf.subarray(s.used, s.used + view.length)
    s.used += view.length
    s.live++
    return [chunk, s]
  }

  release (s: Slab | undefined): void {
    if (s === undefined || --s.live > 0) return
    if (s === this.current) s.used = 0 // nothing in it is still needed: fill it again from the start
    else if (this.spare.length < SPARE_SLABS) { s.used = 0; this.spare.push(s) }
  }
}
