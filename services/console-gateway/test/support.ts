/**
 * Test support for the console gateway: the gateway runs as its real compiled process (startStack), and
 * the test plays the agent (publishes ConsoleMintRequest with the target sealed by the shared key, aad =
 * job id, after creating the job record) and the receiver (consumes `<ns>.results` and records the
 * JobUpdate on the job as the receiver does).
 */
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inflateSync } from 'node:zlib'
import type { BrowserContext, Page } from 'playwright-core'
import { WebSocket } from 'ws'
import { AmqpClient, names } from '@porthole/shared/amqp'
import type { ConsoleGrant, ConsoleResult, ConsoleTarget, Job, JobUpdate } from '@porthole/contracts'
import { nextSolTicket, readSolHello, SecretBox } from '@porthole/shared/crypto'
import { createLogger } from '@porthole/shared/logging'
import { ConsoleSessionStore, createRedis, JobStore, urlHandoverAad, type Redis } from '@porthole/shared/store'
import { ByteQueue } from '../src/rfb.js'
import { startStack, tinyDomain, virsh, waitFor, type Stack, type StackOptions, type TinyDomain } from '@porthole/testkit'

type After = { after: (fn: () => Promise<void>) => void }

/**
 * A file-wide clean-up list: node:test's `after` called from inside a `before` hook would run at the end
 * of that hook, so files register this once at top level and hand `suite` to the helpers.
 */
export function fileScope (register: (fn: () => Promise<void>) => void): After {
  const fns: Array<() => Promise<void>> = []
  register(async () => { for (const fn of fns.reverse()) await fn() })
  return { after: (fn) => { fns.push(fn) } }
}

export interface Minted { grant: ConsoleGrant, jobId: string, sessionId: string, token: string, update: JobUpdate }

export interface MintOptions {
  target: ConsoleTarget
  protocol?: 'vnc' | 'guacamole' | 'serial'
  ttlSeconds?: number
  singleUse?: boolean
  serverName?: string
  /** The page may renew the session (ConsoleParams.renewable), up to maxTotalSeconds in all. */
  renewable?: boolean
  maxTotalSeconds?: number
  /** Seal the target for this aad instead of the job id (a box moved from another job). */
  aad?: string
}

export interface Harness {
  stack: Stack
  redis: Redis
  jobs: JobStore
  sessions: ConsoleSessionStore
  origin: string
  /** Every token minted so far (the log checks look for them). */
  tokens: string[]
  /** Publishes a mint request as an agent would and waits for the gateway's JobUpdate. */
  publishMint: (o: MintOptions) => Promise<{ jobId: string, update: JobUpdate }>
  mint: (o: MintOptions) => Promise<Minted>
  /** Publishes any body to the mint queue and waits for the JobUpdate of `jobId`. */
  publishRaw: (body: unknown, jobId: string) => Promise<JobUpdate>
}

export async function harness (t: After, o: StackOptions = {}): Promise<Harness> {
  const stack = await startStack(t, { services: ['console-gateway'], ...o })
  const log = createLogger({ name: 'test', level: 'silent' })
  const amqp = new AmqpClient({ url: stack.svc.rabbitmqUrl, namespace: stack.ns, log, name: 'console-gateway-test' })
  await amqp.start()
  const redis = createRedis(stack.svc.redisUrl, log, 'console-gateway-test')
  t.after(async () => { await amqp.close(); redis.disconnect() })
  const jobs = new JobStore(redis, stack.ns)
  const sessions = new ConsoleSessionStore(redis, stack.ns)
  const n = names(stack.ns)
  const updates = new Map<string, JobUpdate>()
  // The gateway reports console jobs in the interactive lane.
  await amqp.consume(n.resultsInteractiveQueue, async (d) => {
    const u = d.body as JobUpdate
    updates.set(u.jobId, u)
    // Recorded as the receiver records it.
    await jobs.transition(u.jobId, u.state, { ...(u.result === undefined ? {} : { result: u.result }), ...(u.error === undefined ? {} : { error: u.error }) })
    return 'ack'
  }, { prefetch: 10 })
  const shared = SecretBox.forConsoleTransit({ CONSOLE_TRANSIT_KEY: stack.transitKey, CONSOLE_TRANSIT_KEY_ID: 't1', CONSOLE_OLD_TRANSIT_KEYS: '' })
  const tokens: string[] = []

  const publishMint = async (m: MintOptions): Promise<{ jobId: string, update: JobUpdate }> => {
    const now = new Date()
    const job: Job = {
      id: randomUUID(),
      kind: 'console',
      serverId: randomUUID(),
      tenantId: randomUUID(),
      console: {
        protocol: m.protocol ?? 'vnc', ttlSeconds: m.ttlSeconds ?? 600, singleUse: m.singleUse ?? false,
        ...(m.renewable === undefined ? {} : { renewable: m.renewable }), ...(m.maxTotalSeconds === undefined ? {} : { maxTotalSeconds: m.maxTotalSeconds })
      },
      requestedBy: 'test',
      createdAt: now.toISOString(),
      deadline: new Date(now.getTime() + 60_000).toISOString(),
      attempt: 1,
      traceId: randomUUID().slice(0, 8)
    }
    await jobs.create(job)
    await amqp.publish(n.consoleExchange, n.mintKey, {
      job,
      server: { id: job.serverId, tenantId: job.tenantId, name: m.serverName ?? 'test-server' },
      target: shared.seal(m.target, m.aad ?? job.id)
    })
    const update = await waitFor(() => updates.get(job.id), 10_000, 'the gateway\'s JobUpdate')
    return { jobId: job.id, update }
  }

  const mint = async (m: MintOptions): Promise<Minted> => {
    const { jobId, update } = await publishMint(m)
    if (update.state !== 'succeeded') throw new Error(`mint failed: ${JSON.stringify(update.error)}`)
    const rec = await waitFor(async () => { const r = await jobs.get(jobId); return r?.state === 'succeeded' ? r : undefined }, 5000, 'the job record')
    const result = rec.result as ConsoleResult
    // As the API does: take the sealed URL once; the record itself never holds it.
    assert.equal(result.url, undefined, 'the job record must not hold the console URL')
    const sealed = await sessions.takeUrlHandover(jobId)
    if (sealed === undefined) throw new Error('the gateway left no URL hand-over for the job')
    const grant: ConsoleGrant = { ...result, url: shared.open<string>(sealed, urlHandoverAad(jobId)) }
    const hash = new URL(grant.url).hash
    const token = hash.slice(1)
    tokens.push(token)
    return { grant, jobId, sessionId: grant.sessionId, token, update }
  }

  const publishRaw = async (body: unknown, jobId: string): Promise<JobUpdate> => {
    await amqp.publish(n.consoleExchange, n.mintKey, body)
    return await waitFor(() => updates.get(jobId), 10_000, 'the gateway\'s JobUpdate')
  }

  return { stack, redis, jobs, sessions, origin: new URL(stack.gatewayUrl).origin, tokens, publishMint, mint, publishRaw }
}

export interface Viewer {
  ws: WebSocket
  /** Resolves when the socket is open (rejects with the HTTP status of a refused upgrade). */
  opened: Promise<void>
  closed: Promise<{ code: number, reason: string, at: number }>
  /** Reads exactly n bytes from the socket. */
  read: (n: number) => Promise<Buffer>
}

/** Opens a console WebSocket the way the page does: the token in Sec-WebSocket-Protocol. */
export function openViewer (h: Harness, sessionId: string, token: string | undefined, o: { origin?: string, protocol?: string, path?: string, base?: string } = {}): Viewer {
  const url = (o.base ?? h.stack.gatewayUrl.replace(/^http/, 'ws')) + (o.path ?? `/s/${sessionId}/ws`)
  const protocols = [o.protocol ?? 'binary', ...(token === undefined ? [] : [`porthole.token.${token}`])]
  const ws = new WebSocket(url, protocols, { origin: o.origin ?? h.origin })
  let buf = Buffer.alloc(0)
  let want: { n: number, resolve: (b: Buffer) => void } | undefined
  ws.on('message', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    if (want !== undefined && buf.length >= want.n) { const w = want; want = undefined; const out = buf.subarray(0, w.n); buf = buf.subarray(w.n); w.resolve(out) }
  })
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('unexpected-response', (_req, res) => { reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode })); ws.terminate() })
    ws.once('error', reject)
  })
  opened.catch(() => {})
  const closed = new Promise<{ code: number, reason: string, at: number }>(resolve => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() })))
  const read = async (n: number): Promise<Buffer> => {
    if (buf.length >= n) { const out = buf.subarray(0, n); buf = buf.subarray(n); return out }
    return await new Promise(resolve => { want = { n, resolve } })
  }
  return { ws, opened, closed, read }
}

/**
 * Completes the RFB handshake as a VNC viewer would, through the gateway: expects to be offered only
 * "None" security, and returns the target's ServerInit (framebuffer size and desktop name).
 */
export async function rfbHandshake (v: Viewer, o: { shared?: boolean } = {}): Promise<{ width: number, height: number, name: string, offered: number[] }> {
  await v.opened
  const version = (await v.read(12)).toString('latin1')
  if (version !== 'RFB 003.008\n') throw new Error(`unexpected version ${JSON.stringify(version)}`)
  v.ws.send(Buffer.from('RFB 003.008\n'))
  const n = (await v.read(1))[0] as number
  const offered = [...await v.read(n)]
  v.ws.send(Buffer.from([1]))
  const result = (await v.read(4)).readUInt32BE(0)
  if (result !== 0) throw new Error(`security result ${result}`)
  v.ws.send(Buffer.from([o.shared === false ? 0 : 1])) // ClientInit: shared, unless asked otherwise
  const init = await v.read(24)
  const nameLength = init.readUInt32BE(20)
  const name = (await v.read(nameLength)).toString('utf8')
  return { width: init.readUInt16BE(0), height: init.readUInt16BE(2), name, offered }
}

export interface KeyEvent { down: boolean, keysym: number, scancode?: number, at: number }

export interface Recorder {
  target: ConsoleTarget
  keys: KeyEvent[]
  /** SetDesktopSize requests: the size asked for. */
  resizes: Array<{ width: number, height: number }>
  /** Each connection's ClientInit shared flag, in connecting order. */
  shared: number[]
  /** Every client message type received, in order (all connections). */
  types: number[]
}

const u16b = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b }
const u32b = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b }
const s32b = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b }
const rect = (x: number, y: number, w: number, hh: number, enc: number): Buffer => Buffer.concat([u16b(x), u16b(y), u16b(w), u16b(hh), s32b(enc)])

/**
 * A VNC server (RFB 3.8, security None) with a `width`×`height` screen that records what the viewer sends.
 * Answers the first update request with pseudo-rectangles only: QEMU's extended key event when `qemuKeys`
 * (noVNC then sends scancodes too) and ExtendedDesktopSize (so that noVNC may ask for another size).
 */
export async function recorder (scope: After, o: { qemuKeys: boolean, width?: number, height?: number }): Promise<Recorder> {
  const width = o.width ?? 1280
  const height = o.height ?? 960
  const r: Recorder = { target: { kind: 'vnc', host: '127.0.0.1', port: 0 }, keys: [], resizes: [], shared: [], types: [] }
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    s.on('close', () => sockets.delete(s))
    const q = new ByteQueue()
    s.on('data', (b: Buffer) => q.push(b))
    s.on('close', () => q.fail(new Error('closed')))
    void (async () => {
      s.write('RFB 003.008\n')
      await q.read(12)
      s.write(Buffer.from([1, 1]))
      await q.read(1)
      s.write(u32b(0))
      r.shared.push((await q.read(1))[0] as number) // ClientInit
      const name = Buffer.from('recorder')
      s.write(Buffer.concat([u16b(width), u16b(height), Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]), u32b(name.length), name]))
      let encodings: number[] = []
      let answered = false
      for (;;) {
        const type = (await q.read(1))[0] as number
        r.types.push(type)
        if (type === 0) await q.read(19)
        else if (type === 2) {
          const n = (await q.read(3)).readUInt16BE(1)
          const b = await q.read(4 * n)
          encodings = Array.from({ length: n }, (_, i) => b.readInt32BE(4 * i))
        } else if (type === 3) {
          await q.read(9)
          if (answered) continue
          answered = true
          const rects: Buffer[] = []
          if (o.qemuKeys && encodings.includes(-258)) rects.push(rect(0, 0, 0, 0, -258))
          if (encodings.includes(-308)) rects.push(rect(0, 0, width, height, -308), Buffer.from([1, 0, 0, 0]), u32b(0), u16b(0), u16b(0), u16b(width), u16b(height), u32b(0))
          const count = rects.filter(b => b.length === 12).length
          s.write(Buffer.concat([Buffer.from([0, 0]), u16b(count), ...rects]))
        } else if (type === 4) {
          const b = await q.read(7)
          r.keys.push({ down: b[0] === 1, keysym: b.readUInt32BE(3), at: performance.now() })
        } else if (type === 5) await q.read(5)
        else if (type === 6) await q.read((await q.read(7)).readUInt32BE(3))
        else if (type === 251) {
          const b = await q.read(7)
          await q.read(16 * (b[5] as number))
          r.resizes.push({ width: b.readUInt16BE(1), height: b.readUInt16BE(3) })
        } else if (type === 255) {
          const b = await q.read(11)
          if (b[0] !== 0) throw new Error(`QEMU message ${b[0]}`)
          r.keys.push({ down: b.readUInt16BE(1) === 1, keysym: b.readUInt32BE(3), scancode: b.readUInt32BE(7), at: performance.now() })
        } else throw new Error(`client message ${type}`)
      }
    })().catch(() => { s.destroy() })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  r.target = { kind: 'vnc', host: '127.0.0.1', port: (server.address() as AddressInfo).port }
  scope.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  return r
}

/** The VNC target of a libvirt test domain. */
export async function vncTarget (port: number | undefined, password?: string): Promise<ConsoleTarget> {
  if (port === undefined) throw new Error('the domain has no VNC port')
  return { kind: 'vnc', host: '127.0.0.1', port, ...(password === undefined ? {} : { password }) }
}

export interface SolBridge {
  /** The `sol` target naming this bridge, with the bridge token it accepts. */
  target: ConsoleTarget
  /** Everything viewers sent through the gateway, as latin1 text. */
  received: () => string
  /** Sends serial bytes to every connected gateway. */
  send: (b: Buffer | string) => void
}

/**
 * Plays an agent's SOL bridge for gateway tests: a TCP server that takes a hello signed with `secret`
 * (anything else: closed without a word), answers `CLAIMED\nOK\n` for its current ticket, which it then
 * replaces with the successor both sides derive (`ERR invalid\n` for any other ticket), and then acts as a
 * host's serial line: it greets with `greeting` and echoes what it receives in upper case (as the e2e
 * test's serial device does).
 */
export async function solBridge (t: After, secret: string, greeting = ''): Promise<SolBridge> {
  const key = Buffer.from(secret, 'base64')
  let ticket = randomBytes(32).toString('base64url')
  const first = ticket
  let received = ''
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    s.on('close', () => sockets.delete(s))
    let buf = Buffer.alloc(0)
    let open = false
    s.on('data', (d: Buffer) => {
      if (open) {
        received += d.toString('latin1')
        s.write(d.toString('latin1').toUpperCase(), 'latin1')
        return
      }
      buf = Buffer.concat([buf, d])
      const i = buf.indexOf(0x0a)
      if (i === -1) return
      const hello = readSolHello(key, buf.subarray(0, i).toString('latin1'))
      if (hello === undefined) { s.destroy(); return }
      if (hello.token !== ticket) { s.end('ERR invalid\n'); return }
      ticket = nextSolTicket(key, hello.token, hello.nonce)
      open = true
      s.write('CLAIMED\nOK\n' + greeting)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  return {
    target: { kind: 'sol', host: '127.0.0.1', port, ticket: first },
    received: () => received,
    send: (b) => { for (const s of sockets) s.write(b) }
  }
}

import { launchChromium } from '@porthole/testkit/chromium'
/** The test kit's Chromium launcher, for the tests that import it from here. */
export { launchChromium }

/** What a browser test of a VNC console needs: the gateway's harness, a tiny VM with a VNC password, its target, Chromium. */
/** What a file of browser tests against one VNC VM shares: the harness, the VM, its console target and a Chromium. */
export interface VncBrowserSuite { h: Harness, vm: TinyDomain, target: ConsoleTarget, browser: BrowserContext }

export async function vncBrowserSuite (scope: After, password: string, viewport = { width: 1024, height: 700 }, stack: StackOptions = {}): Promise<VncBrowserSuite> {
  const [h, vm, browser] = await Promise.all([harness(scope, stack), tinyDomain(scope, { vncPassword: password }), launchChromium(scope, viewport)])
  return { h, vm, browser, target: await vncTarget(await vm.vncPort(), password) }
}

/** A new page of `browser` on a console URL, once its console is connected; closed at the end of `scope`. */
export async function connectedPage (scope: After, browser: BrowserContext, url: string): Promise<Page> {
  const page = await browser.newPage()
  scope.after(async () => { await page.close() })
  await page.goto(url)
  await page.waitForSelector('body[data-connected="true"]', { timeout: 15_000 })
  return page
}

/** The VM's screen as libvirt itself captures it: the bytes `virsh screenshot` writes (PNG with libvirt 9). */
export async function vmScreenshot (d: TinyDomain): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-shot-'))
  try {
    await virsh('screenshot', d.name, join(dir, 'screen'))
    return await readFile(join(dir, 'screen'))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Decodes the PNGs QEMU writes (8-bit RGB or RGBA, not interlaced) to RGB. */
export function decodePng (png: Buffer): { width: number, height: number, rgb: Buffer } {
  if (!png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) throw new Error('the screenshot is not a PNG')
  let width = 0; let height = 0; let channels = 0
  const idat: Buffer[] = []
  for (let i = 8; i < png.length;) {
    const len = png.readUInt32BE(i)
    const type = png.toString('latin1', i + 4, i + 8)
    const data = png.subarray(i + 8, i + 8 + len)
    if (type === 'IHDR') {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4)
      const [depth, color, , , interlace] = [data[8], data[9], data[10], data[11], data[12]]
      channels = color === 2 ? 3 : color === 6 ? 4 : 0
      if (depth !== 8 || channels === 0 || interlace !== 0) throw new Error(`unsupported PNG (depth ${String(depth)}, colour ${String(color)}, interlace ${String(interlace)})`)
    } else if (type === 'IDAT') idat.push(data)
    i += 12 + len
  }
  const raw = inflateSync(Buffer.concat(idat))
  const stride = width * channels
  const out = Buffer.alloc(width * height * 3)
  let prev = Buffer.alloc(stride)
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)))
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? line[x - channels] as number : 0
      const b = prev[x] as number
      const c = x >= channels ? prev[x - channels] as number : 0
      let pred = 0
      if (filter === 1) pred = a
      else if (filter === 2) pred = b
      else if (filter === 3) pred = (a + b) >> 1
      else if (filter === 4) { const p = a + b - c; const pa = Math.abs(p - a); const pb = Math.abs(p - b); const pc = Math.abs(p - c); pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c }
      line[x] = ((line[x] as number) + pred) & 0xff
    }
    for (let x = 0; x < width; x++) line.copy(out, (y * width + x) * 3, x * channels, x * channels + 3)
    prev = line
  }
  return { width, height, rgb: out }
}

/**
 * Lit pixels (r + g + b > 60) in text row `row` of a VGA text screen (16 pixel rows each, as SeaBIOS
 * draws them), from libvirt's screenshot: a blinking cursor lights under 20, a line of text hundreds.
 */
export function litInTextRow (shot: { width: number, height: number, rgb: Buffer }, row: number): number {
  let lit = 0
  for (let y = row * 16; y < Math.min(shot.height, (row + 1) * 16); y++) {
    for (let x = 0; x < shot.width; x++) {
      const p = (y * shot.width + x) * 3
      if ((shot.rgb[p] as number) + (shot.rgb[p + 1] as number) + (shot.rgb[p + 2] as number) > 60) lit++
    }
  }
  return lit
}

/**
 * The console page's screen canvas (the largest under `#screen`: noVNC draws on one, guacamole-common-js also
 * keeps one for the cursor): its size, how many pixels are lit, a fingerprint, and optionally its top-left `w`×`h` pixels as RGB.
 * Runs in the page, as a string: this project compiles without the DOM library.
 */
export async function canvasStats (page: Page, rgb?: { w: number, h: number }): Promise<{ lit: number, width: number, height: number, sum: number, rgb?: string }> {
  return await page.evaluate(`((rgb) => {
    let c = null
    for (const x of document.querySelectorAll('#screen canvas')) if (c === null || x.width * x.height > c.width * c.height) c = x
    if (c === null || c.width === 0 || c.height === 0) return { lit: 0, width: 0, height: 0, sum: 0 }
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
    let lit = 0; let sum = 0
    for (let i = 0; i < d.length; i += 4) {
      const v = d[i] + d[i + 1] + d[i + 2]
      if (v > 60) lit++
      sum = (sum * 31 + v * (i + 1)) % 1000000007
    }
    let out
    if (rgb !== null && rgb.w <= c.width && rgb.h <= c.height) {
      let s = ''
      for (let y = 0; y < rgb.h; y++) for (let x = 0; x < rgb.w; x++) {
        const i = (y * c.width + x) * 4
        s += String.fromCharCode(d[i], d[i + 1], d[i + 2])
      }
      out = btoa(s)
    }
    return { lit, width: c.width, height: c.height, sum, rgb: out }
  })(${JSON.stringify(rgb ?? null)})`)
}
