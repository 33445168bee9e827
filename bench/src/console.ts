/**
 * The console path's speed, through the real services (API, RabbitMQ, receiver, agents, console gateway,
 * Redis) and tiny libvirt domains, each figure beside a reference measured in the same run:
 *  1. console-URL issue (POST /v1/servers/{id}/console, default wait) at 1, 10 and 50 clients, beside a floor of
 *     three confirmed RabbitMQ hops (publish → consume → publish → …, with AmqpClient) and, as the
 *     "hops + libvirt" reference, the status job (API → receiver → kvm agent → libvirt → results → API);
 *  2. the VNC relay against a direct TCP connection and against websockify, all three on the same target: the
 *     bench's own RFB server in a process of its own (1280×800, 32 bpp, raw encoding, a fixed pattern), which
 *     answers every FramebufferUpdateRequest at once, so the figures are the relay's and not the VNC server's.
 *     It is registered as an ipmi server's console endpoint, so the gateway's URL comes through the real API
 *     pipeline. Per path: time to the first full frame, full-frame round trip, frames/s and MB/s.
 *     2b. the same three paths on QEMU's VNC server (a tiny domain), labelled as what they are: QEMU sends
 *     an update on its own display refresh timer, so those figures are QEMU's pace, not the relay's;
 *  3. the gateway's memory per idle viewer with 1,000 viewers open. QEMU keeps a framebuffer per VNC client,
 *     so the target here is the bench's own RFB server (static 64×48 framebuffer), registered as an ipmi
 *     server's console endpoint (the ipmi agent names that endpoint without calling the BMC);
 *  4. click-to-pixels in Chromium: API call → page load → first lit canvas frame, 10 runs.
 *
 * Everything the bench starts (services, domains, websockify, the RFB server process, Chromium) is removed
 * on the way out: after success, after a failure, and on SIGINT/SIGTERM.
 *
 *   npm run bench -- console [--quick] [--only=relay,qemu,...] [--gateway-profile=DIR] [--cpu-profile=DIR] [--json]
 *
 * `--only=` runs some sections only: `issue` (1), `relay` (2), `qemu` (2b), `memory` (3), `browser` (4); the tiny
 * domains are created only for the sections that use them (`--only=relay` needs none). `--gateway-profile=DIR`:
 * the gateway process records a CPU profile (open it in Chrome's DevTools) and its GC pauses, written to DIR when
 * it exits (`--cpu-prof` itself is not allowed in NODE_OPTIONS, so a small module passed with `--import` does it).
 * `--cpu-profile=DIR`: every service runs with `--cpu-prof` into DIR/<service>; at the end the bench stops them
 * and prints each one's top self-time functions and files (bench/src/cpuprofile-summary.ts) during section 1.
 * Section 1 also reads each process's CPU time (/proc/<pid>/stat) around every loop: the services, RabbitMQ,
 * Redis and libvirtd (bench/src/cpu.ts). `--json`: one JSON object on stdout (section 1 per client count:
 * p50Ms, p99Ms, perSecond, floorP50Ms, floorPerSecond, cpuMsPerUrl, …), the human report on stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { connect, createServer, type Socket } from 'node:net'
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import WebSocket from 'ws'
import { AmqpClient, names } from '@porthole/shared/amqp'
import { createLogger } from '@porthole/shared/logging'
import { ALL_SERVICES, dropNamespace, freePort, startStack, tinyDomain, waitFor, type ServiceName, type Stack } from '@porthole/testkit'
import { FIRST_LIT_FRAME, launchChromium } from '@porthole/testkit/chromium'
import { UNCAPPED, closedLoop, jsonClient, onlySections, percentile, table, type Summary } from './stats.js'
import { measureCpu, perCall, stackProcesses, type CpuProcesses } from './cpu.js'
import { formatSummary, profileFiles, summarizeFile } from './cpuprofile-summary.js'

const quick = process.argv.includes('--quick')
const SECTIONS = ['issue', 'relay', 'qemu', 'memory', 'browser'] as const
type Section = (typeof SECTIONS)[number]
const only = onlySections(SECTIONS)
const runs = (s: Section): boolean => only.has(s)
const profileDir = process.argv.find(a => a.startsWith('--gateway-profile='))?.slice('--gateway-profile='.length)
const cpuProfileArg = process.argv.find(a => a.startsWith('--cpu-profile='))?.slice('--cpu-profile='.length)
const cpuProfileDir = cpuProfileArg === undefined ? undefined : resolve(cpuProfileArg)
/** `--json`: stdout carries one JSON object and nothing else; the human report goes to stderr. */
const json = process.argv.includes('--json')
const report = (text: string): void => { (json ? process.stderr : process.stdout).write(text + '\n') }
const cleanups: Array<() => Promise<void>> = []
const t = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50)
const max = (xs: number[]): number => Math.max(...xs)
const t00 = performance.now()
const progress = (what: string): void => { process.stderr.write(`[console bench +${((performance.now() - t00) / 1000).toFixed(1)} s] ${what}\n`) }

/** Runs every registered clean-up once, newest first; one that hangs or fails does not keep the others from running. */
let cleaning: Promise<void> | undefined
async function cleanUp (): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      await withTimeout(fn(), 20_000).catch((err: Error) => { progress(`clean-up step failed: ${err.message}`) })
    }
  })()
  await cleaning
}

/** Calls `fn` once; later calls wait for that one. */
function once (fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined
  return async () => { p ??= fn(); await p }
}

/** Stops a child process (its whole process group when `group`): SIGTERM, SIGKILL after 3 s, then waits for its exit. */
async function stopChild (p: ChildProcess, group: boolean): Promise<void> {
  const pid = p.pid
  if (pid === undefined) return // never started
  const kill = (sig: NodeJS.Signals): void => { try { if (group) process.kill(-pid, sig); else p.kill(sig) } catch { /* gone already */ } }
  if (p.exitCode === null && p.signalCode === null) {
    const exited = new Promise<void>(resolve => p.once('exit', () => resolve()))
    kill('SIGTERM')
    const timer = setTimeout(() => kill('SIGKILL'), 3000)
    await exited
    clearTimeout(timer)
  }
  // websockify forks a process per connection; none of them may outlive the bench.
  if (group) kill('SIGKILL')
}

// ---- 1. console-URL issue ------------------------------------------------------------------------------

/**
 * Three confirmed hops with AmqpClient, in the lane console jobs travel (classic queues): jobs → (consumer) →
 * agents → (consumer) → console mint → (caller).
 */
async function threeHops (stack: Stack): Promise<(concurrency: number, total: number) => Promise<Summary>> {
  const log = createLogger({ name: 'bench', level: 'silent' })
  const ns = `${stack.ns}-floor`
  const c = new AmqpClient({ url: stack.svc.rabbitmqUrl, namespace: ns, log, name: 'bench-floor' })
  await c.start()
  t.after(async () => { await c.close(); await dropNamespace(ns, stack.svc) })
  const n = names(ns)
  const waiting = new Map<string, () => void>()
  await c.consume(n.receiverInteractiveQueue, async (d) => { await c.publish(n.agentsExchange, n.agentKeyOf('kvm', 'console'), d.body, { expiration: 10_000 }); return 'ack' }, { prefetch: 64 })
  await c.consume(n.agentInteractiveQueue('kvm'), async (d) => { await c.publish(n.consoleExchange, n.mintKey, d.body, { expiration: 10_000 }); return 'ack' }, { prefetch: 64 })
  await c.consume(n.mintQueue, async (d) => { const id = (d.body as { id: string }).id; waiting.get(id)?.(); waiting.delete(id); return 'ack' }, { prefetch: 64 })
  return async (concurrency, total) => await closedLoop(concurrency, total, async () => {
    const id = randomUUID()
    const done = new Promise<void>(resolve => waiting.set(id, resolve))
    await c.publish(n.jobsExchange, n.receiverKeyOf('console'), { id }, { expiration: 10_000 })
    await done
  })
}

// ---- an RFB client over TCP or WebSocket ----------------------------------------------------------------

/** Bytes in, read back (or skipped) in exact lengths. */
class Bytes {
  private chunks: Buffer[] = []
  private length = 0
  private waiter: { n: number, resolve: () => void, reject: (e: Error) => void } | undefined
  private error: Error | undefined
  push (b: Buffer): void {
    this.chunks.push(b); this.length += b.length
    const w = this.waiter
    if (w !== undefined && this.length >= w.n) { this.waiter = undefined; w.resolve() }
  }

  fail (e: Error): void { this.error ??= e; const w = this.waiter; this.waiter = undefined; w?.reject(e) }
  async read (n: number): Promise<Buffer> {
    await this.need(n)
    return this.take(n)
  }

  /** Drops the next `n` bytes as they arrive, without copying them (pixel data the bench does not look at). */
  async skip (n: number): Promise<void> {
    let left = n
    while (left > 0) {
      await this.need(1)
      let k = Math.min(left, this.length)
      left -= k
      this.length -= k
      while (k > 0) {
        const first = this.chunks[0] as Buffer
        if (first.length <= k) { this.chunks.shift(); k -= first.length } else { this.chunks[0] = first.subarray(k); k = 0 }
      }
    }
  }

  private async need (n: number): Promise<void> {
    if (this.length >= n) return
    if (this.error !== undefined) throw this.error
    await new Promise<void>((resolve, reject) => { this.waiter = { n, resolve, reject } })
  }

  private take (n: number): Buffer {
    if ((this.chunks[0]?.length ?? 0) >= n) {
      const first = this.chunks[0] as Buffer
      const out = first.subarray(0, n)
      if (first.length === n) this.chunks.shift(); else this.chunks[0] = first.subarray(n)
      this.length -= n
      return out
    }
    const all = Buffer.concat(this.chunks)
    this.chunks = all.length > n ? [all.subarray(n)] : []
    this.length = all.length - n
    return all.subarray(0, n)
  }
}

interface Wire { bytes: Bytes, write: (b: Buffer) => void, close: () => void }

/** Every connection still open, closed on the way out (a failed run must not keep the process alive). */
const openWires = new Set<Wire>()
t.after(async () => { for (const w of openWires) w.close() })

async function tcpWire (port: number): Promise<Wire> {
  const bytes = new Bytes()
  const s = connect({ host: '127.0.0.1', port, noDelay: true })
  const wire: Wire = { bytes, write: b => s.write(b), close: () => { openWires.delete(wire); s.destroy() } }
  openWires.add(wire)
  s.on('data', (b: Buffer) => bytes.push(b))
  s.on('error', (e) => bytes.fail(e))
  s.on('close', () => { openWires.delete(wire); bytes.fail(new Error('closed')) })
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  return wire
}

async function wsWire (url: string, protocols: string[], origin?: string): Promise<Wire> {
  const bytes = new Bytes()
  const ws = new WebSocket(url, protocols, { origin, perMessageDeflate: false })
  const wire: Wire = { bytes, write: b => ws.send(b), close: () => { openWires.delete(wire); ws.terminate() } }
  openWires.add(wire)
  ws.binaryType = 'nodebuffer'
  ws.on('message', (d: Buffer) => bytes.push(d))
  ws.on('error', (e) => bytes.fail(e))
  ws.on('close', (code) => { openWires.delete(wire); bytes.fail(new Error(`closed ${code}`)) })
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  return wire
}

interface Rfb { w: number, h: number, bpp: number, wire: Wire }

const u16 = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b }
const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b }
const updateRequest = (incremental: boolean, x: number, y: number, w: number, h: number): Buffer =>
  Buffer.concat([Buffer.from([3, incremental ? 1 : 0]), u16(x), u16(y), u16(w), u16(h)])
const fullRequest = (r: Rfb): Buffer => updateRequest(false, 0, 0, r.w, r.h)

/** RFB 3.8 handshake (security None), ClientInit (shared), ServerInit, SetEncodings [raw]. */
async function rfbOpen (wire: Wire): Promise<Rfb> {
  const b = wire.bytes
  await b.read(12)
  wire.write(Buffer.from('RFB 003.008\n', 'latin1'))
  const n = (await b.read(1))[0] as number
  if (n === 0) throw new Error('server refused the connection')
  const types = [...await b.read(n)]
  if (!types.includes(1)) throw new Error(`no security type None offered (${types.join(',')})`)
  wire.write(Buffer.from([1]))
  if ((await b.read(4)).readUInt32BE(0) !== 0) throw new Error('security failed')
  wire.write(Buffer.from([1]))
  const init = await b.read(24)
  await b.read(init.readUInt32BE(20))
  wire.write(Buffer.concat([Buffer.from([2, 0]), u16(1), u32(0)]))
  return { w: init.readUInt16BE(0), h: init.readUInt16BE(2), bpp: (init[4] as number) / 8, wire }
}

/**
 * Reads one FramebufferUpdate of raw rectangles (skipping other server messages); returns its byte count.
 * With `keep`, the rectangles' pixels are kept there (to check them); otherwise they are skipped uncopied.
 */
async function readUpdate (r: Rfb, keep?: Buffer[]): Promise<number> {
  const b = r.wire.bytes
  for (;;) {
    const type = (await b.read(1))[0]
    if (type === 0) break
    if (type === 2) continue // bell
    if (type === 1) { const h = await b.read(5); await b.read(h.readUInt16BE(3) * 6); continue }
    if (type === 3) { const h = await b.read(7); await b.read(h.readUInt32BE(3)); continue }
    throw new Error(`unexpected server message ${String(type)}`)
  }
  const rects = (await b.read(3)).readUInt16BE(1)
  let bytes = 4
  for (let i = 0; i < rects; i++) {
    const h = await b.read(12)
    const enc = h.readInt32BE(8)
    const size = enc === 0 ? h.readUInt16BE(4) * h.readUInt16BE(6) * r.bpp : 0
    if (enc !== 0 && enc !== -223) throw new Error(`unexpected encoding ${enc}`)
    if (size > 0) { if (keep !== undefined) keep.push(Buffer.from(await b.read(size))); else await b.skip(size) }
    bytes += 12 + size
  }
  return bytes
}

async function withTimeout<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms) })])
  } finally { clearTimeout(timer) }
}

type Dial = () => Promise<Wire>

/** Time from dialling to the first full frame, in ms. */
async function firstFrame (dial: Dial): Promise<number> {
  const t0 = performance.now()
  const r = await rfbOpen(await dial())
  try {
    r.wire.write(fullRequest(r))
    await withTimeout(readUpdate(r), 10_000)
    return performance.now() - t0
  } finally { r.wire.close() }
}

interface FrameFigures { rttP50: number, rttP99: number, fps1: number, fpsN: number, mbpsN: number, frameBytes: number }

/**
 * `frames` full frames with one request in flight (each one's round trip: request → last byte of the frame),
 * then (when `window` > 1) `frames` more with `window` requests in flight (throughput: frames/s and MB/s of RFB
 * bytes received).
 * Starts with a few frames of warm-up.
 */
async function frameRun (dial: Dial, frames: number, window: number): Promise<FrameFigures> {
  const r = await rfbOpen(await dial())
  try {
    const req = fullRequest(r)
    let frameBytes = 0
    for (let i = 0; i < 5; i++) { r.wire.write(req); frameBytes = await withTimeout(readUpdate(r), 10_000) }
    const lat: number[] = []
    let t0 = performance.now()
    for (let i = 0; i < frames; i++) {
      const s = performance.now()
      r.wire.write(req)
      await withTimeout(readUpdate(r), 10_000)
      lat.push(performance.now() - s)
    }
    const secs1 = (performance.now() - t0) / 1000
    const s = [...lat].sort((a, b) => a - b)
    if (window <= 1) return { rttP50: percentile(s, 50), rttP99: percentile(s, 99), fps1: frames / secs1, fpsN: frames / secs1, mbpsN: frames * frameBytes / secs1 / 1e6, frameBytes }
    let bytes = 0
    let sent = 0
    t0 = performance.now()
    for (; sent < Math.min(window, frames); sent++) r.wire.write(req)
    for (let got = 0; got < frames; got++) {
      bytes += await withTimeout(readUpdate(r), 10_000)
      if (sent < frames) { r.wire.write(req); sent++ }
    }
    const secsN = (performance.now() - t0) / 1000
    return { rttP50: percentile(s, 50), rttP99: percentile(s, 99), fps1: frames / secs1, fpsN: frames / secsN, mbpsN: bytes / secsN / 1e6, frameBytes }
  } finally { r.wire.close() }
}

/** The first full frame's pixels, as the client received them. */
async function framePixels (dial: Dial): Promise<Buffer> {
  const r = await rfbOpen(await dial())
  try {
    const keep: Buffer[] = []
    r.wire.write(fullRequest(r))
    await withTimeout(readUpdate(r, keep), 10_000)
    return Buffer.concat(keep)
  } finally { r.wire.close() }
}

// ---- the bench's own RFB server --------------------------------------------------------------------------

/** The framebuffer's fixed content (32 bpp, little-endian, red at bit 16, green at 8, blue at 0): gradients and an XOR pattern. */
function testPattern (w: number, h: number): Buffer {
  const px = Buffer.alloc(w * h * 4)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 4
      px[o] = (x * 255 / Math.max(1, w - 1)) & 0xff
      px[o + 1] = (y * 255 / Math.max(1, h - 1)) & 0xff
      px[o + 2] = ((x ^ y) & 0xff) | 0x20
    }
  }
  return px
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

interface RfbServer { port: number, clients: () => number, close: () => Promise<void> }

/**
 * A minimal RFB 3.8 server: security None, one static w×h framebuffer, raw encoding; every
 * FramebufferUpdateRequest (incremental or not) is answered at once with the requested rectangle.
 */
async function rfbServer (W: number, H: number): Promise<RfbServer> {
  const px = testPattern(W, H)
  const rectMsg = (x: number, y: number, w: number, h: number): Buffer => {
    const rows: Buffer[] = []
    for (let r = y; r < y + h; r++) rows.push(px.subarray((r * W + x) * 4, (r * W + x + w) * 4))
    return Buffer.concat([Buffer.from([0, 0]), u16(1), u16(x), u16(y), u16(w), u16(h), u32(0), ...rows])
  }
  const full = rectMsg(0, 0, W, H)
  const name = Buffer.from('porthole bench')
  const init = Buffer.concat([u16(W), u16(H), Buffer.from([32, 24, 0, 1]), u16(255), u16(255), u16(255), Buffer.from([16, 8, 0, 0, 0, 0]), u32(name.length), name])
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.setNoDelay(true)
    s.on('error', () => {})
    s.on('close', () => sockets.delete(s))
    let stage = 0
    let buf: Buffer = Buffer.alloc(0)
    s.write('RFB 003.008\n')
    s.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d])
      for (;;) {
        if (stage === 0) { // ProtocolVersion → one security type: None
          if (buf.length < 12) return
          buf = buf.subarray(12); s.write(Buffer.from([1, 1])); stage = 1
        } else if (stage === 1) { // security type chosen → SecurityResult OK
          if (buf.length < 1) return
          buf = buf.subarray(1); s.write(u32(0)); stage = 2
        } else if (stage === 2) { // ClientInit → ServerInit
          if (buf.length < 1) return
          buf = buf.subarray(1); s.write(init); stage = 3
        } else {
          if (buf.length < 1) return
          const type = buf[0]
          const len = type === 0 ? 20 : type === 2 ? (buf.length >= 4 ? 4 + buf.readUInt16BE(2) * 4 : Infinity) : type === 3 ? 10 : type === 4 ? 8 : type === 5 ? 6 : type === 6 ? (buf.length >= 8 ? 8 + buf.readUInt32BE(4) : Infinity) : -1
          if (len === -1) { s.destroy(); return }
          if (buf.length < len) return
          if (type === 3) {
            const x = Math.min(buf.readUInt16BE(2), W)
            const y = Math.min(buf.readUInt16BE(4), H)
            const w = Math.min(buf.readUInt16BE(6), W - x)
            const h = Math.min(buf.readUInt16BE(8), H - y)
            s.write(x === 0 && y === 0 && w === W && h === H ? full : rectMsg(x, y, w, h))
          }
          buf = buf.subarray(len)
        }
      }
    })
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve) })
  const a = server.address()
  return {
    port: typeof a === 'object' && a !== null ? a.port : 0,
    clients: () => sockets.size,
    close: async () => { for (const s of sockets) s.destroy(); await new Promise<void>(resolve => server.close(() => resolve())) }
  }
}

const RFB_SERVER_FLAG = '--rfb-server'

/** This file run as `console.js --rfb-server W H`: serves, prints its port, and exits when its stdin closes (its parent is gone). */
async function rfbServerProcess (w: number, h: number): Promise<void> {
  const srv = await rfbServer(w, h)
  process.stdout.write(`${srv.port}\n`)
  const bye = (): void => { void srv.close().finally(() => process.exit(0)) }
  process.stdin.on('end', bye)
  process.stdin.on('error', bye)
  process.stdin.resume()
}

/** The RFB server in a process of its own (as a real VNC server is), so its work does not share the bench's event loop. */
async function spawnRfbServer (w: number, h: number): Promise<{ port: number, stop: () => Promise<void> }> {
  const p = spawn(process.execPath, [fileURLToPath(import.meta.url), RFB_SERVER_FLAG, String(w), String(h)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const stop = once(async () => { p.stdin?.end(); await stopChild(p, false) })
  t.after(stop)
  p.stdin?.on('error', () => {})
  const port = await withTimeout(new Promise<number>((resolve, reject) => {
    let out = ''
    p.stdout?.setEncoding('utf8')
    p.stdout?.on('data', (d: string) => { out += d; const i = out.indexOf('\n'); if (i !== -1) resolve(Number(out.slice(0, i))) })
    p.once('error', reject)
    p.once('exit', (code) => reject(new Error(`RFB server process exited with ${String(code)}`)))
  }), 15_000)
  return { port, stop }
}

/** websockify (its own process group: it forks a process per connection) in front of 127.0.0.1:`target`. */
async function startWebsockify (target: number): Promise<{ port: number, stop: () => Promise<void> }> {
  const port = await freePort()
  const p = spawn('websockify', [`127.0.0.1:${port}`, `127.0.0.1:${target}`], { stdio: ['ignore', 'ignore', 'pipe'], detached: true })
  const stop = once(async () => await stopChild(p, true))
  t.after(stop)
  let err = ''
  let failed: Error | undefined
  p.stderr?.on('data', (d: Buffer) => { err = (err + d.toString('utf8')).slice(-2000) })
  p.once('error', (e) => { failed = e })
  const end = Date.now() + 10_000
  for (;;) {
    if (failed !== undefined) throw new Error(`websockify: ${failed.message}`)
    if (p.exitCode !== null) throw new Error(`websockify exited with ${p.exitCode}: ${err}`)
    const up = await new Promise<boolean>(resolve => {
      const s = connect(port, '127.0.0.1'); s.once('connect', () => { s.destroy(); resolve(true) }); s.once('error', () => resolve(false))
    })
    if (up) return { port, stop }
    if (Date.now() > end) throw new Error(`websockify did not listen within 10 s: ${err}`)
    await sleep(50)
  }
}

async function rssKb (pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1])
}

// ---- profiling the gateway ------------------------------------------------------------------------------

/** Loaded into the gateway with --import: a CPU profile (inspector) and every GC pause, written at exit. */
const PROFILER = `import { Session } from 'node:inspector'
import { PerformanceObserver, performance } from 'node:perf_hooks'
import { writeFileSync } from 'node:fs'
const dir = process.env.BENCH_PROFILE_DIR
const s = new Session()
s.connect()
s.post('Profiler.enable')
s.post('Profiler.setSamplingInterval', { interval: 250 })
s.post('Profiler.start')
const gc = []
new PerformanceObserver((l) => { for (const e of l.getEntries()) gc.push({ at: Math.round(performance.timeOrigin + e.startTime), kind: e.detail?.kind, ms: e.duration }) }).observe({ entryTypes: ['gc'] })
process.on('exit', () => {
  s.post('Profiler.stop', (err, r) => { if (!err) writeFileSync(dir + '/gateway-' + process.pid + '.cpuprofile', JSON.stringify(r.profile)) })
  writeFileSync(dir + '/gateway-' + process.pid + '-gc.json', JSON.stringify(gc))
})
`

/** The gateway's extra environment for `--gateway-profile=DIR`. */
async function profilerEnv (dir: string): Promise<Record<string, string>> {
  const abs = resolve(dir)
  await mkdir(abs, { recursive: true })
  const file = join(abs, 'gateway-profiler.mjs')
  await writeFile(file, PROFILER)
  progress(`profiling the gateway into ${abs} (written when it exits)`)
  return { NODE_OPTIONS: `--import=${pathToFileURL(file).href}`, BENCH_PROFILE_DIR: abs }
}

// ---- 1. console-URL issue, with CPU per call -------------------------------------------------------------

/** One measured loop: its latency figures, and the CPU each process spent on it per call. */
interface Measured { s: Summary, cpu: Record<string, number> }

async function measured (procs: CpuProcesses, run: () => Promise<Summary>): Promise<Measured> {
  const { result, cpu } = await measureCpu(procs, run)
  return { s: result, cpu: perCall(cpu, result.n) }
}

/** Section 1's figures at one client count, as `--json` prints them (ms; CPU summed over the system's processes). */
interface IssueFigures {
  clients: number
  n: number
  p50Ms: number
  p99Ms: number
  perSecond: number
  floorP50Ms: number
  floorP99Ms: number
  floorPerSecond: number
  cpuMsPerUrl: number
  /** cpuMsPerUrl less what the processes use when idle (the idle row's rate over the loop's duration). */
  cpuMsPerUrlAboveIdle: number
  cpuMsPerUrlByProcess: Record<string, number>
  floorCpuMsPerRoundTrip: number
  status: { p50Ms: number, p99Ms: number, perSecond: number, cpuMsPerJob: number, cpuMsPerJobByProcess: Record<string, number> }
}

interface IssueResult { text: string[], figures: IssueFigures[], idleCpuMsPerSecond: Record<string, number>, window: { fromUs: number, toUs: number } }

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n)
const round3 = (x: number): number => Math.round(x * 1000) / 1000
const rounded = (r: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, round3(v)]))

/** The per-process CPU table: one row per measured loop, a column per process (ms per call), `all` their sum without the bench. */
function cpuTable (rows: Array<{ what: string, clients: number | string, cpu: Record<string, number> }>, procs: CpuProcesses): string {
  const cols = [...procs.map(p => p.name), 'all', 'bench']
  return table(rows.map(r => ({ what: r.what, clients: r.clients, ...Object.fromEntries(cols.map(c => [c, r.cpu[c] ?? NaN])) })))
}

/**
 * Console URLs (and the status job, and the three-hop floor) at 1, 10 and 50 clients, each loop's CPU read from
 * /proc per process around it; the shared daemons' CPU while nothing of ours runs, read first.
 */
async function issueSection (stack: Stack, servers: string[], issue: (server: string) => Promise<unknown>, api: ReturnType<typeof jsonClient>): Promise<IssueResult> {
  const procs = stackProcesses(stack)
  const hops = await threeHops(stack)
  const status = async (i: number): Promise<void> => {
    const r = await api('GET', `/v1/servers/${servers[i % servers.length] as string}/status`)
    if (r.status !== 200) throw new Error(`status ${r.status}: ${JSON.stringify(r.body)}`)
  }
  const console1 = async (i: number): Promise<void> => { await issue(servers[i % servers.length] as string) }
  await closedLoop(5, 40, console1)
  await closedLoop(5, 40, status)
  await hops(5, 100)
  const idleMs = 2000
  const idle = await measureCpu(procs, async () => { await sleep(idleMs) })
  const idleCpuMsPerSecond = perCall(idle.cpu, idleMs / 1000)
  const fromUs = nowUs()
  const rows: Array<Record<string, string | number>> = []
  const cpuRows: Parameters<typeof cpuTable>[0] = [{ what: 'idle (ms per second)', clients: '', cpu: idleCpuMsPerSecond }]
  const figures: IssueFigures[] = []
  const aboveIdle = (m: Measured): number => (m.cpu.all as number) - (idleCpuMsPerSecond.all as number) * m.s.seconds / m.s.n
  const scale = quick ? 0.2 : 1
  for (const c of [1, 10, 50]) {
    const total = Math.max(c * 2, Math.round((c === 1 ? 200 : c === 10 ? 1000 : 2000) * scale))
    const fl = await measured(procs, async () => await hops(c, total))
    const st = await measured(procs, async () => await closedLoop(c, total, status))
    progress(`clients ${c}`)
    const co = await measured(procs, async () => await closedLoop(c, total, console1))
    for (const [what, m] of [['floor: 3 confirmed RabbitMQ hops (interactive lane)', fl], ['status job (hops + libvirt reference)', st], ['console URL (POST …/console)', co]] as const) {
      rows.push({ what, clients: c, n: m.s.n, 'per s': m.s.perSecond, 'p50 ms': m.s.p50, 'p99 ms': m.s.p99, 'p50 / 3-hop floor': m === fl ? '' : m.s.p50 / fl.s.p50, 'CPU ms per call': m.cpu.all as number, 'above idle': aboveIdle(m) })
      cpuRows.push({ what, clients: c, cpu: m.cpu })
    }
    figures.push({
      clients: c,
      n: co.s.n,
      p50Ms: round3(co.s.p50),
      p99Ms: round3(co.s.p99),
      perSecond: round3(co.s.perSecond),
      floorP50Ms: round3(fl.s.p50),
      floorP99Ms: round3(fl.s.p99),
      floorPerSecond: round3(fl.s.perSecond),
      cpuMsPerUrl: round3(co.cpu.all as number),
      cpuMsPerUrlAboveIdle: round3(aboveIdle(co)),
      cpuMsPerUrlByProcess: rounded(co.cpu),
      floorCpuMsPerRoundTrip: round3(fl.cpu.all as number),
      status: { p50Ms: round3(st.s.p50), p99Ms: round3(st.s.p99), perSecond: round3(st.s.perSecond), cpuMsPerJob: round3(st.cpu.all as number), cpuMsPerJobByProcess: rounded(st.cpu) }
    })
  }
  const text = ['1. console-URL issue\n', table(rows),
    '\nLatency from the API call to its answer. The floor is three confirmed RabbitMQ hops (AmqpClient, same broker, same run);\nthe status job is the "hops + libvirt" reference (the bench cannot call libvirt\'s binding itself).\n',
    '1a. CPU ms per call, by process (/proc/<pid>/stat utime+stime around each loop; `all`: every process but the bench\'s own client)\n',
    cpuTable(cpuRows, procs),
    `\n${procs.filter(p => p.shared).map(p => p.name).join(', ')} are shared with whatever else runs on this machine: the idle row is their CPU per second while\nnothing of this bench ran (${idleMs / 1000} s, just before). On a shared machine trust CPU per call over latency.\n`]
  return { text, figures, idleCpuMsPerSecond: rounded(idleCpuMsPerSecond), window: { fromUs, toUs: nowUs() } }
}

// ---- CPU profiles of every service (--cpu-profile=DIR) ------------------------------------------------

/** `--cpu-prof` for each service, each into a directory of its own under `dir` (a profile file is named by pid only). */
async function cpuProfileArgs (dir: string): Promise<Partial<Record<ServiceName, string[]>>> {
  const out: Partial<Record<ServiceName, string[]>> = {}
  for (const name of ALL_SERVICES) {
    await mkdir(join(dir, name), { recursive: true })
    out[name] = ['--cpu-prof', `--cpu-prof-dir=${join(dir, name)}`]
  }
  progress(`CPU profiles of the services into ${dir}/<service> (written when each exits)`)
  return out
}

/**
 * Stops the services (node writes a --cpu-prof profile at exit), then summarises each one's newest profile:
 * the samples within section 1's measured loops when there are some (V8's profile clock is the monotonic
 * clock process.hrtime reads), else the whole profile, start-up included. Also written to DIR/summary.txt.
 */
async function profileReport (stack: Stack, dir: string, window: { fromUs: number, toUs: number } | undefined): Promise<string> {
  await stack.stopAll()
  const parts: string[] = [`CPU profiles (${dir}): self time by function and by file, ${window === undefined ? 'whole run' : 'section 1\'s measured loops only'}\n`]
  for (const name of ALL_SERVICES) {
    const written = (await readdir(join(dir, name)).catch(() => [] as string[])).length > 0
    const file = written ? profileFiles(join(dir, name)).at(-1) : undefined
    if (file === undefined) { parts.push(`${name}: no profile written`); continue }
    const s = summarizeFile(file, 12, window)
    parts.push(formatSummary(`${name} (${file})${s.windowed ? '' : ', whole profile (no samples in the window)'}`, s))
  }
  const text = parts.join('\n')
  await writeFile(join(dir, 'summary.txt'), text + '\n')
  return text
}

// ---- main ---------------------------------------------------------------------------------------------

interface Grant { sessionId: string, url: string }

async function main (): Promise<void> {
  // LOG_LEVEL stays info: each service's "ready" line, which startStack waits for, is an info line.
  // The bench process does not keep the services' log lines (holding and scanning them would be measured too).
  const stack = await startStack(t, {
    keepLogs: false,
    envFor: { receiver: UNCAPPED, ...(profileDir === undefined ? {} : { 'console-gateway': await profilerEnv(profileDir) }) },
    ...(cpuProfileDir === undefined ? {} : { nodeArgsFor: await cpuProfileArgs(cpuProfileDir) })
  })
  const api = jsonClient(stack.apiUrl, stack.adminToken)
  const gw = new URL(stack.gatewayUrl)
  const tenant = (await stack.api('POST', '/v1/tenants', { name: 'bench' })).body.id as string
  // Tiny domains: the console URLs of section 1, QEMU's VNC server (2b), the page's target (4).
  const nVms = runs('issue') || runs('qemu') || runs('browser') ? quick ? 4 : 8 : 0
  const vms = await Promise.all(Array.from({ length: nVms }, async () => await tinyDomain(t)))
  // A freshly started tiny VM keeps a CPU busy for seconds while its BIOS looks for something to boot.
  await Promise.all(vms.map(async d => await d.settled()))
  const servers: string[] = []
  for (const d of vms) {
    const r = await stack.api('POST', '/v1/servers', { name: d.name, tenantId: tenant, agent: 'kvm', connection: { uri: d.uri, domain: d.name } })
    if (r.status !== 201) throw new Error(`server ${r.status}: ${JSON.stringify(r.body)}`)
    servers.push(r.body.id as string)
  }
  const issue = async (server: string, protocol = 'vnc'): Promise<Grant> => {
    const r = await api('POST', `/v1/servers/${server}/console`, { protocol, ttlSeconds: 900 })
    if (r.status !== 201) throw new Error(`console ${r.status}: ${JSON.stringify(r.body)}`)
    return r.body as Grant
  }
  const tokenOf = (g: Grant): string => g.url.slice(g.url.indexOf('#') + 1)
  const gatewayDial = (g: Grant): Dial => async () => await wsWire(`ws://${gw.host}/s/${g.sessionId}/ws`, ['binary', `porthole.token.${tokenOf(g)}`], gw.origin)
  const ipmiConsoleServer = async (name: string, port: number): Promise<string> => {
    const r = await stack.api('POST', '/v1/servers', { name, tenantId: tenant, agent: 'ipmi', connection: { host: '127.0.0.1', username: 'bench', password: 'bench-pass' }, console: { host: '127.0.0.1', port } })
    if (r.status !== 201) throw new Error(`ipmi server ${r.status}: ${JSON.stringify(r.body)}`)
    return r.body.id as string
  }
  const threePaths = async (vncPort: number, grant: Grant, target: string): Promise<{ paths: Array<[string, Dial]>, stop: () => Promise<void> }> => {
    const wsify = await startWebsockify(vncPort)
    return {
      paths: [
        [`direct TCP to ${target}`, async () => await tcpWire(vncPort)],
        ['gateway WebSocket (session, token check)', gatewayDial(grant)],
        ['websockify 0.10 (no auth)', async () => await wsWire(`ws://127.0.0.1:${wsify.port}/`, ['binary'])]
      ],
      stop: wsify.stop
    }
  }
  /** The report, section by section, printed at the end. */
  const out: string[] = []

  let issued: IssueResult | undefined
  if (runs('issue')) {
    progress('1. console-URL issue')
    issued = await issueSection(stack, servers, issue, api)
    out.push(...issued.text)
  }

  if (runs('relay')) {
    progress('2. relay')
    // 2. relay vs direct TCP vs websockify, on the bench's own RFB server --------------------------------
    const FB = { w: 1280, h: 800 }
    const relayRuns = quick ? 30 : 60
    const relayFrames = quick ? 200 : 500
    // On two cores a single throughput run swings by ±30 % from one run to the next: several rounds, each path once per
    // round, the order rotated from round to round (no path always runs first), and the medians reported.
    const relayRounds = quick ? 3 : 5
    const inFlight = 4
    const big = await spawnRfbServer(FB.w, FB.h)
    const relayGrant = await issue(await ipmiConsoleServer('bench-rfb-relay', big.port))
    const relay = await threePaths(big.port, relayGrant, 'the bench RFB server')
    const want = sha256(testPattern(FB.w, FB.h))
    for (const [name, dial] of relay.paths) {
      progress(`warm-up and pixel check ${name}`)
      await firstFrame(dial)
      const got = await framePixels(dial)
      if (sha256(got) !== want) throw new Error(`${name}: the first frame's ${got.length} bytes of pixels differ from the server's framebuffer`)
    }
    const first: Record<string, number[]> = {}
    for (const [name] of relay.paths) first[name] = []
    progress(`first frame ×${relayRuns} per path`)
    for (let i = 0; i < relayRuns; i++) {
      for (const [name, dial] of relay.paths) { (first[name] as number[]).push(await firstFrame(dial)); await sleep(10) }
    }
    const rounds: Record<string, FrameFigures[]> = {}
    for (const [name] of relay.paths) rounds[name] = []
    for (let round = 0; round < relayRounds; round++) {
      const order = relay.paths.map((_p, i) => relay.paths[(i + round) % relay.paths.length] as [string, Dial])
      for (const [name, dial] of order) {
        progress(`round ${round + 1}/${relayRounds}: ${relayFrames} full frames ×2 ${name}`)
        ;(rounds[name] as FrameFigures[]).push(await frameRun(dial, relayFrames, inFlight))
      }
    }
    const figures: Record<string, FrameFigures> = {}
    for (const [name, rs] of Object.entries(rounds)) {
      const med = (k: keyof FrameFigures): number => median(rs.map(r => r[k]))
      figures[name] = { rttP50: med('rttP50'), rttP99: med('rttP99'), fps1: med('fps1'), fpsN: med('fpsN'), mbpsN: med('mbpsN'), frameBytes: med('frameBytes') }
    }
    const spread = (name: string): string => (rounds[name] as FrameFigures[]).map(r => r.fpsN.toFixed(0)).join(' ')
    await relay.stop()
    await big.stop()
    const [directName, gatewayName, wsifyName] = relay.paths.map(([name]) => name) as [string, string, string]
    const ffOf = (name: string): number => median(first[name] as number[])
    const figOf = (name: string): FrameFigures => figures[name] as FrameFigures
    const rows2 = relay.paths.map(([name]) => {
      const f = figOf(name)
      const ff = ffOf(name)
      return {
        path: name,
        'first frame p50 ms': ff,
        'vs direct': ff / ffOf(directName),
        'vs websockify': ff / ffOf(wsifyName),
        'frame rtt p50 ms': f.rttP50,
        'rtt p99 ms': f.rttP99,
        'rtt vs websockify': f.rttP50 / figOf(wsifyName).rttP50,
        'frames/s (1 in flight)': f.fps1,
        [`frames/s (${inFlight} in flight)`]: f.fpsN,
        'MB/s': f.mbpsN,
        'fps vs websockify': f.fpsN / figOf(wsifyName).fpsN,
        [`frames/s (${inFlight} in flight) per round`]: spread(name)
      }
    })
    const frameMB = figOf(directName).frameBytes / 1e6
    const gw2 = figOf(gatewayName)
    const ws2 = figOf(wsifyName)
    out.push(`2. VNC relay on the bench's own RFB server (separate process, ${FB.w}×${FB.h}, 32 bpp, raw, fixed pattern, every update request answered at once)\n`,
      table(rows2),
      `\nFirst frame: dial → RFB handshake → first full raw frame (${frameMB.toFixed(2)} MB), p50 of ${relayRuns} connections per path, interleaved.
Frame rtt: full-frame request → last byte of the frame, ${relayFrames} frames with one request in flight; frames/s and MB/s: ${relayFrames} more
frames with ${inFlight} requests in flight; each a median of ${relayRounds} rounds (each path once per round, the order rotated; the last
column shows every round). The pixels of a first frame were checked byte for byte on each path. Gateway URL: minted through
POST /v1/servers/{id}/console for an ipmi server whose console endpoint is this RFB server.
Gateway first frame vs direct: ${((ffOf(gatewayName) / ffOf(directName)) * 100 - 100).toFixed(1)} % (aim ≤ 5 %); vs websockify: ${(ffOf(gatewayName) / ffOf(wsifyName)).toFixed(2)}×.
Gateway frames/s / websockify: ${(gw2.fpsN / ws2.fpsN).toFixed(2)} (aim ≥ 1); frame rtt / websockify: ${(gw2.rttP50 / ws2.rttP50).toFixed(2)}.\n`)
  }

  if (runs('qemu')) {
    progress('2b. relay on QEMU (paced by QEMU)')
    // 2b. the same paths on QEMU's VNC server: QEMU's own refresh timer paces its updates -----------------
    const vm = vms[0] as (typeof vms)[number]
    const qemuPort = await waitFor(async () => await vm.vncPort(), 10_000, 'a VNC port')
    const qemu = await threePaths(qemuPort, await issue(servers[0] as string), 'QEMU\'s VNC')
    const qemuRuns = quick ? 5 : 11
    const qemuFrames = 20
    const rows2b: Array<Record<string, string | number>> = []
    for (const [name, dial] of qemu.paths) {
      progress(`QEMU ${name}`)
      await firstFrame(dial)
      const ff: number[] = []
      for (let i = 0; i < qemuRuns; i++) { ff.push(await firstFrame(dial)); await sleep(10) }
      // One request in flight: QEMU folds outstanding non-incremental requests into one update.
      const f = await frameRun(dial, qemuFrames, 1)
      rows2b.push({ path: `${name} (paced by QEMU)`, 'first frame p50 ms': median(ff), 'frame rtt p50 ms': f.rttP50, 'frames/s': f.fps1, 'frame KB': f.frameBytes / 1e3 })
    }
    await qemu.stop()
    out.push(`2b. the same three paths on QEMU's VNC server (${vm.name}): PACED BY QEMU, not a relay measure\n`, table(rows2b),
      `\nQEMU answers a non-incremental update request on its own display refresh timer, so all three paths show QEMU's pace
(first frame p50 of ${qemuRuns}, frame rtt over ${qemuFrames} full frames, one in flight). Kept as a check that the relay works against a real VNC server.\n`)
  }

  if (runs('memory')) {
    progress('3. memory')
    // 3. memory per idle viewer ---------------------------------------------------------------------------
    const sessions = 1000
    const rfb = await rfbServer(64, 48)
    t.after(rfb.close)
    const ipmiServers: string[] = []
    for (let i = 0; i < 10; i++) ipmiServers.push(await ipmiConsoleServer(`bench-rfb-${i}`, rfb.port))
    const grants: Grant[] = []
    const tMint = performance.now()
    await closedLoop(20, sessions, async (i) => { grants.push(await issue(ipmiServers[i % ipmiServers.length] as string)) })
    const mintSecs = (performance.now() - tMint) / 1000
    const gwPid = stack.procs.get('console-gateway')?.pid
    if (gwPid === undefined) throw new Error('no gateway process')
    await sleep(3000)
    const before = await rssKb(gwPid)
    const viewers: Rfb[] = []
    const tOpen = performance.now()
    await closedLoop(50, grants.length, async (i) => {
      const r = await rfbOpen(await gatewayDial(grants[i] as Grant)())
      r.wire.write(updateRequest(false, 0, 0, r.w, r.h))
      await readUpdate(r)
      viewers.push(r)
    })
    const openSecs = (performance.now() - tOpen) / 1000
    await sleep(3000)
    const health = await (await fetch(`${stack.gatewayUrl}/healthz`)).json() as { viewers: number }
    const after = await rssKb(gwPid)
    const perSession = (after - before) / viewers.length
    for (const v of viewers) v.wire.close()
    const rows3 = [{ viewers: viewers.length, 'gateway viewers (healthz)': health.viewers, 'target TCP clients': rfb.clients(), 'RSS before MB': before / 1024, 'RSS after MB': after / 1024, 'KB per viewer': perSession, 'mint s': mintSecs, 'open s': openSecs }]
    out.push('3. gateway memory per idle viewer (target: the bench\'s own minimal RFB server, 64×48 static framebuffer: QEMU would hold a framebuffer per client)\n',
      table(rows3), '\nRSS of the gateway process (/proc/<pid>/status) 3 s after minting vs 3 s after every viewer finished its handshake and first frame. Aim < 64 KB.\n')
  }

  if (runs('browser')) {
    progress('4. click-to-pixels')
    // 4. click-to-pixels in Chromium ----------------------------------------------------------------------
    const browser = await launchChromium(t, { width: 1024, height: 700 })
    const protocols = ['vnc', ...(process.env.GUACD_HOST !== undefined ? ['guacamole'] : [])]
    const rows4: Array<Record<string, string | number>> = []
    for (const protocol of protocols) {
      const server = servers[1 % servers.length] as string
      const total: number[] = []
      const api: number[] = []
      const nav: number[] = []
      let cold: { total: number, nav: number } | undefined
      for (let i = 0; i < 11; i++) {
        const page = await browser.newPage()
        const t0 = Date.now()
        const g = await issue(server, protocol)
        const tApi = Date.now()
        await page.goto(g.url, { waitUntil: 'commit' })
        const r = await page.evaluate(FIRST_LIT_FRAME) as { at: number, nav: number }
        if (i === 0) cold = { total: r.at - t0, nav: r.at - r.nav }
        else { total.push(r.at - t0); api.push(tApi - t0); nav.push(r.at - r.nav) }
        await page.close()
      }
      rows4.push({ protocol, runs: total.length, 'API p50 ms': median(api), 'navigation→lit p50 ms': median(nav), 'navigation→lit max': max(nav), 'API→lit p50 ms': median(total), 'API→lit max': max(total), 'first (cold cache) API→lit': cold?.total ?? NaN, 'first nav→lit': cold?.nav ?? NaN })
    }
    out.push('4. click-to-pixels in headless Chromium (persistent profile: runs 2–11 have the page\'s assets cached)\n', table(rows4),
      `\nAPI→lit: from the POST …/console call to the first animation frame with lit pixels on the console canvas; navigation→lit: from the page's navigation start.${protocols.length === 1 ? ' guacamole: GUACD_HOST not set, skipped.' : ''}`)
  }

  const sections = only.size === SECTIONS.length ? '' : `, sections: ${[...only].join(', ')}`
  const at = new Date().toISOString()
  report(`\nPorthole console benchmark (${at}, ${quick ? 'quick' : 'full'} run, ${nVms} tiny KVM domains${sections})\n`)
  report(out.join('\n'))
  const profiles = cpuProfileDir === undefined ? undefined : await profileReport(stack, cpuProfileDir, issued?.window)
  if (profiles !== undefined) report(profiles)
  if (json) {
    process.stdout.write(JSON.stringify({
      bench: 'console',
      at,
      quick,
      sections: [...only],
      loadAverage: loadavg(),
      ...(issued === undefined ? {} : { idleCpuMsPerSecond: issued.idleCpuMsPerSecond, clients: Object.fromEntries(issued.figures.map(f => [String(f.clients), f])) })
    }) + '\n')
  }
}

if (process.argv[2] === RFB_SERVER_FLAG) {
  await rfbServerProcess(Number(process.argv[3]), Number(process.argv[4]))
} else {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => { progress(`${sig}: cleaning up`); void cleanUp().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143)) })
  }
  process.once('uncaughtException', (err) => { console.error(err); void cleanUp().finally(() => process.exit(1)) })
  try {
    await main()
  } catch (err) {
    console.error(err)
    process.exitCode = 1
  } finally {
    await cleanUp()
  }
}
