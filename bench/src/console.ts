/**
 * The console path's speed, through the real services (API, RabbitMQ, receiver, agents, console gateway,
 * Redis) and tiny libvirt domains, each figure beside a reference measured in the same run:
 *  1. console-URL issue (POST /v1/servers/{id}/console, default wait) at 1, 10 and 50 clients, beside a floor of
 *     three confirmed RabbitMQ hops (publish → consume → publish → …, with AmqpClient) and, as the
 *     "hops + libvirt" reference, the status job (API → receiver → kvm agent → libvirt → results → API);
 *  2. the VNC relay against a direct TCP connection and against websockify on the same VNC server (a tiny
 *     domain without a VNC password): time to the first full frame, round trip of a small update, and raw
 *     full-frame throughput (frames/s, MB/s);
 *  3. the gateway's memory per idle viewer with 1,000 viewers open. QEMU keeps a framebuffer per VNC client,
 *     so the target here is a minimal RFB server of the bench's own (static 64×48 framebuffer), registered
 *     as an ipmi server's console endpoint (the ipmi agent names that endpoint without calling the BMC);
 *  4. click-to-pixels in Chromium: API call → page load → first lit canvas frame, 10 runs.
 *
 *   npm run bench -- console [--quick]
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import WebSocket from 'ws'
import { AmqpClient, names } from '@porthole/shared/amqp'
import { createLogger } from '@porthole/shared/logging'
import { dropNamespace, freePort, startStack, tinyDomain, waitFor, type Stack } from '@porthole/shared/testing'
import { closedLoop, percentile, table, type Summary } from './stats.js'

const quick = process.argv.includes('--quick')
const cleanups: Array<() => Promise<void>> = []
const t = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50)
const max = (xs: number[]): number => Math.max(...xs)
const t00 = performance.now()
const progress = (what: string): void => { process.stderr.write(`[console bench +${((performance.now() - t00) / 1000).toFixed(1)} s] ${what}\n`) }

// ---- 1. console-URL issue ------------------------------------------------------------------------------

/** Three confirmed hops with AmqpClient: jobs → (consumer) → agents → (consumer) → console → (caller). */
async function threeHops (stack: Stack): Promise<(concurrency: number, total: number) => Promise<Summary>> {
  const log = createLogger({ name: 'bench', level: 'silent' })
  const ns = `${stack.ns}-floor`
  const c = new AmqpClient({ url: stack.svc.rabbitmqUrl, namespace: ns, log, name: 'bench-floor' })
  await c.start()
  t.after(async () => { await c.close(); await dropNamespace(ns, stack.svc) })
  const n = names(ns)
  const waiting = new Map<string, () => void>()
  await c.consume(n.receiverQueue, async (d) => { await c.publish(n.agentsExchange, 'kvm', d.body); return 'ack' }, { prefetch: 64 })
  await c.consume(n.agentQueue('kvm'), async (d) => { await c.publish(n.consoleExchange, n.mintKey, d.body); return 'ack' }, { prefetch: 64 })
  await c.consume(n.mintQueue, async (d) => { const id = (d.body as { id: string }).id; waiting.get(id)?.(); waiting.delete(id); return 'ack' }, { prefetch: 64 })
  return async (concurrency, total) => await closedLoop(concurrency, total, async () => {
    const id = randomUUID()
    const done = new Promise<void>(resolve => waiting.set(id, resolve))
    await c.publish(n.jobsExchange, n.receiverKey, { id })
    await done
  })
}

// ---- an RFB client over TCP or WebSocket ----------------------------------------------------------------

/** Bytes in, read back in exact lengths. */
class Bytes {
  private chunks: Buffer[] = []
  private length = 0
  private waiter: { n: number, resolve: (b: Buffer) => void, reject: (e: Error) => void } | undefined
  private error: Error | undefined
  push (b: Buffer): void {
    this.chunks.push(b); this.length += b.length
    const w = this.waiter
    if (w !== undefined && this.length >= w.n) { this.waiter = undefined; w.resolve(this.take(w.n)) }
  }

  fail (e: Error): void { this.error ??= e; const w = this.waiter; this.waiter = undefined; w?.reject(e) }
  async read (n: number): Promise<Buffer> {
    if (this.length >= n) return this.take(n)
    if (this.error !== undefined) throw this.error
    return await new Promise((resolve, reject) => { this.waiter = { n, resolve, reject } })
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

async function tcpWire (port: number): Promise<Wire> {
  const bytes = new Bytes()
  const s = connect({ host: '127.0.0.1', port, noDelay: true })
  s.on('data', (b: Buffer) => bytes.push(b))
  s.on('error', (e) => bytes.fail(e))
  s.on('close', () => bytes.fail(new Error('closed')))
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  return { bytes, write: b => s.write(b), close: () => s.destroy() }
}

async function wsWire (url: string, protocols: string[], origin?: string): Promise<Wire> {
  const bytes = new Bytes()
  const ws = new WebSocket(url, protocols, { origin, perMessageDeflate: false })
  ws.binaryType = 'nodebuffer'
  ws.on('message', (d: Buffer) => bytes.push(d))
  ws.on('error', (e) => bytes.fail(e))
  ws.on('close', (code) => bytes.fail(new Error(`closed ${code}`)))
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  return { bytes, write: b => ws.send(b), close: () => ws.terminate() }
}

interface Rfb { w: number, h: number, bpp: number, wire: Wire }

const u16 = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b }
const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b }
const updateRequest = (incremental: boolean, x: number, y: number, w: number, h: number): Buffer =>
  Buffer.concat([Buffer.from([3, incremental ? 1 : 0]), u16(x), u16(y), u16(w), u16(h)])

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

/** Reads one FramebufferUpdate of raw rectangles (skipping other server messages); returns its byte count. */
async function readUpdate (r: Rfb): Promise<number> {
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
    if (size > 0) await b.read(size)
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
  r.wire.write(updateRequest(false, 0, 0, r.w, r.h))
  await readUpdate(r)
  const ms = performance.now() - t0
  r.wire.close()
  return ms
}

/** Round trip of a 1×1 non-incremental update request, and full-frame throughput for `seconds`. */
async function relayRun (dial: Dial, seconds: number, rtts: number): Promise<{ rttP50: number, rttP99: number, fps: number, mbps: number }> {
  const r = await rfbOpen(await dial())
  r.wire.write(updateRequest(false, 0, 0, r.w, r.h)); await readUpdate(r)
  const lat: number[] = []
  for (let i = 0; i < rtts; i++) {
    const s = performance.now()
    r.wire.write(updateRequest(false, i % r.w, 0, 1, 1))
    await withTimeout(readUpdate(r), 10_000)
    lat.push(performance.now() - s)
  }
  let frames = 0
  let bytes = 0
  const end = performance.now() + seconds * 1000
  const t0 = performance.now()
  // One request in flight: QEMU folds outstanding non-incremental requests into one update.
  while (performance.now() < end) {
    r.wire.write(updateRequest(false, 0, 0, r.w, r.h))
    bytes += await withTimeout(readUpdate(r), 10_000); frames++
  }
  const secs = (performance.now() - t0) / 1000
  r.wire.close()
  const s = [...lat].sort((a, b) => a - b)
  return { rttP50: percentile(s, 50), rttP99: percentile(s, 99), fps: frames / secs, mbps: bytes / secs / 1e6 }
}

// ---- 3. a minimal RFB server (static framebuffer) --------------------------------------------------------

async function tinyRfbServer (): Promise<{ port: number, server: Server, clients: () => number }> {
  const W = 64
  const H = 48
  const frame = Buffer.concat([Buffer.from([0, 0]), u16(1), u16(0), u16(0), u16(W), u16(H), u32(0), Buffer.alloc(W * H * 4, 0x80)])
  const name = Buffer.from('bench')
  const init = Buffer.concat([u16(W), u16(H), Buffer.from([32, 24, 0, 1]), u16(255), u16(255), u16(255), Buffer.from([16, 8, 0, 0, 0, 0]), u32(name.length), name])
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.setNoDelay(true)
    s.on('error', () => {})
    s.on('close', () => sockets.delete(s))
    let stage = 0
    let buf = Buffer.alloc(0)
    s.write('RFB 003.008\n')
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      for (;;) {
        if (stage === 0 && buf.length >= 12) { buf = buf.subarray(12); s.write(Buffer.from([1, 1])); stage = 1 } else if (stage === 1 && buf.length >= 1) { buf = buf.subarray(1); s.write(u32(0)); stage = 2 } else if (stage === 2 && buf.length >= 1) { buf = buf.subarray(1); s.write(init); stage = 3 } else if (stage === 3 && buf.length >= 1) {
          const type = buf[0]
          const len = type === 0 ? 20 : type === 2 ? (buf.length >= 4 ? 4 + buf.readUInt16BE(2) * 4 : Infinity) : type === 3 ? 10 : type === 4 ? 8 : type === 5 ? 6 : type === 6 ? (buf.length >= 8 ? 8 + buf.readUInt32BE(4) : Infinity) : -1
          if (len === -1) { s.destroy(); return }
          if (buf.length < len) return
          if (type === 3) s.write(frame)
          buf = buf.subarray(len)
        } else return
      }
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => { for (const s of sockets) s.destroy(); await new Promise<void>(resolve => server.close(() => resolve())) })
  const a = server.address()
  return { port: typeof a === 'object' && a !== null ? a.port : 0, server, clients: () => sockets.size }
}

async function rssKb (pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1])
}

// ---- main ---------------------------------------------------------------------------------------------

interface Grant { sessionId: string, url: string }

async function main (): Promise<void> {
  // LOG_LEVEL stays info: each service's "ready" line, which startStack waits for, is an info line.
  const stack = await startStack(t)
  const gw = new URL(stack.gatewayUrl)
  const tenant = (await stack.api('POST', '/v1/tenants', { name: 'bench' })).body.id as string
  const nVms = quick ? 4 : 8
  const vms = await Promise.all(Array.from({ length: nVms }, async () => await tinyDomain(t)))
  const servers: string[] = []
  for (const d of vms) {
    const r = await stack.api('POST', '/v1/servers', { name: d.name, tenantId: tenant, agent: 'kvm', connection: { uri: d.uri, domain: d.name } })
    if (r.status !== 201) throw new Error(`server ${r.status}: ${JSON.stringify(r.body)}`)
    servers.push(r.body.id as string)
  }
  const issue = async (server: string, protocol = 'vnc'): Promise<Grant> => {
    const r = await stack.api('POST', `/v1/servers/${server}/console`, { protocol, ttlSeconds: 900 })
    if (r.status !== 201) throw new Error(`console ${r.status}: ${JSON.stringify(r.body)}`)
    return r.body as Grant
  }
  const tokenOf = (g: Grant): string => g.url.slice(g.url.indexOf('#') + 1)
  const gatewayDial = (g: Grant): Dial => async () => await wsWire(`ws://${gw.host}/s/${g.sessionId}/ws`, ['binary', `porthole.token.${tokenOf(g)}`], gw.origin)

  progress('1. console-URL issue')
  // 1. console-URL issue --------------------------------------------------------------------------------
  const rows1: Array<Record<string, string | number>> = []
  const add1 = (what: string, c: number, s: Summary, fl?: Summary): void => {
    rows1.push({ what, clients: c, n: s.n, 'per s': s.perSecond, 'p50 ms': s.p50, 'p99 ms': s.p99, 'p50 / 3-hop floor': fl === undefined ? '' : s.p50 / fl.p50 })
  }
  const hops = await threeHops(stack)
  await closedLoop(5, 40, async (i) => { await issue(servers[i % servers.length] as string) })
  await closedLoop(5, 40, async (i) => { await stack.api('GET', `/v1/servers/${servers[i % servers.length] as string}/status`) })
  await hops(5, 100)
  const scale = quick ? 0.2 : 1
  for (const c of [1, 10, 50]) {
    const total = Math.max(c * 2, Math.round((c === 1 ? 200 : c === 10 ? 1000 : 2000) * scale))
    const fl = await hops(c, total)
    add1('floor: 3 confirmed RabbitMQ hops', c, fl)
    add1('status job (hops + libvirt reference)', c, await closedLoop(c, total, async (i) => {
      const r = await stack.api('GET', `/v1/servers/${servers[i % servers.length] as string}/status`)
      if (r.status !== 200) throw new Error(`status ${r.status}: ${JSON.stringify(r.body)}`)
    }), fl)
    progress(`clients ${c}`)
    add1('console URL (POST …/console)', c, await closedLoop(c, total, async (i) => { await issue(servers[i % servers.length] as string) }), fl)
  }

  progress('2. relay')
  // 2. relay vs direct TCP vs websockify ------------------------------------------------------------------
  const vm = vms[0] as (typeof vms)[number]
  const vncPort = await waitFor(async () => await vm.vncPort(), 10_000, 'a VNC port')
  const wsPort = await freePort()
  const wsify = spawn('websockify', [`127.0.0.1:${wsPort}`, `127.0.0.1:${vncPort}`], { stdio: 'ignore' })
  t.after(async () => { wsify.kill('SIGTERM'); await new Promise(resolve => setTimeout(resolve, 100)) })
  await waitFor(async () => await new Promise<boolean>(resolve => {
    const s = connect(wsPort, '127.0.0.1'); s.once('connect', () => { s.destroy(); resolve(true) }); s.once('error', () => resolve(false))
  }), 10_000, 'websockify to listen')
  const relayGrant = await issue(servers[0] as string)
  const paths: Array<[string, Dial]> = [
    ['direct TCP to QEMU\'s VNC', async () => await tcpWire(vncPort)],
    ['gateway WebSocket (session, token check)', gatewayDial(relayGrant)],
    ['websockify 0.x (no auth)', async () => await wsWire(`ws://127.0.0.1:${wsPort}/`, ['binary'])]
  ]
  const runs = quick ? 7 : 21
  const seconds = quick ? 3 : 8
  const first: Record<string, number[]> = {}
  for (const [name] of paths) first[name] = []
  for (const [name, dial] of paths) { progress(`warm-up ${name}`); await firstFrame(dial) }
  for (let i = 0; i < runs; i++) {
    for (const [name, dial] of paths) { (first[name] as number[]).push(await firstFrame(dial)); await sleep(20) }
  }
  const rows2: Array<Record<string, string | number>> = []
  const direct = median(first[paths[0]?.[0] as string] as number[])
  let wsifyFps = 0
  for (const [name, dial] of paths) {
    progress(`throughput ${name}`)
    const r = await relayRun(dial, seconds, quick ? 30 : 100)
    if (name.startsWith('websockify')) wsifyFps = r.fps
    const ff = median(first[name] as number[])
    rows2.push({ path: name, 'first frame p50 ms': ff, 'vs direct': ff / direct, '1x1 rtt p50 ms': r.rttP50, 'rtt p99 ms': r.rttP99, 'frames/s': r.fps, 'MB/s': r.mbps })
  }

  progress('3. memory')
  // 3. memory per idle viewer -----------------------------------------------------------------------------
  const sessions = quick ? 1000 : 1000
  const rfb = await tinyRfbServer()
  const ipmiServers: string[] = []
  for (let i = 0; i < 10; i++) {
    const r = await stack.api('POST', '/v1/servers', { name: `bench-rfb-${i}`, tenantId: tenant, agent: 'ipmi', connection: { host: '127.0.0.1', username: 'bench', password: 'bench-pass' }, console: { host: '127.0.0.1', port: rfb.port } })
    if (r.status !== 201) throw new Error(`ipmi server ${r.status}: ${JSON.stringify(r.body)}`)
    ipmiServers.push(r.body.id as string)
  }
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

  progress('4. click-to-pixels')
  // 4. click-to-pixels in Chromium ------------------------------------------------------------------------
  const dir = await mkdtemp(join(tmpdir(), 'porthole-bench-chromium-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const browser: BrowserContext = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
    viewport: { width: 1024, height: 700 }
  })
  t.after(async () => { await browser.close() })
  const protocols = ['vnc', ...(process.env.GUACD_HOST !== undefined ? ['guacamole'] : [])]
  const rows4: Array<Record<string, string | number>> = []
  // Resolves in the page at the first animation frame whose screen canvas (the largest one) has lit pixels;
  // returns that moment as epoch ms, and the navigation's start.
  const LIT = `new Promise((resolve) => {
    const check = () => {
      const cs = [...document.querySelectorAll('#screen canvas')].filter(c => c.width > 0).sort((a, b) => b.width * b.height - a.width * a.height)
      const c = cs[0]
      if (c !== undefined) {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
        let lit = 0
        for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60 && ++lit > 200) break
        if (lit > 200) { resolve({ at: performance.timeOrigin + performance.now(), nav: performance.timeOrigin }); return }
      }
      requestAnimationFrame(check)
    }
    check()
  })`
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
      const r = await page.evaluate(LIT) as { at: number, nav: number }
      if (i === 0) cold = { total: r.at - t0, nav: r.at - r.nav }
      else { total.push(r.at - t0); api.push(tApi - t0); nav.push(r.at - r.nav) }
      await page.close()
    }
    rows4.push({ protocol, runs: total.length, 'API p50 ms': median(api), 'navigation→lit p50 ms': median(nav), 'navigation→lit max': max(nav), 'API→lit p50 ms': median(total), 'API→lit max': max(total), 'first (cold cache) API→lit': cold?.total ?? NaN, 'first nav→lit': cold?.nav ?? NaN })
  }

  console.log(`\nPorthole console benchmark (${new Date().toISOString()}, ${quick ? 'quick' : 'full'} run, ${nVms} tiny KVM domains)\n`)
  console.log('1. console-URL issue\n')
  console.log(table(rows1))
  console.log('\nLatency from the API call to its answer. The floor is three confirmed RabbitMQ hops (AmqpClient, same broker, same run);\nthe status job is the "hops + libvirt" reference (the bench cannot call libvirt\'s binding itself).\n')
  console.log(`2. VNC relay, same QEMU VNC server (tiny domain, no VNC password), raw encoding, ${vm.name}\n`)
  console.log(table(rows2))
  const gwRow = rows2[1] as Record<string, number>
  console.log(`\nFirst full frame: dial → RFB handshake → first full raw frame (p50 of ${runs}). Gateway first frame / direct: ${((gwRow['vs direct'] ?? NaN) * 100 - 100).toFixed(1)} % (aim ≤ 5 %); gateway frames/s / websockify: ${((gwRow['frames/s'] ?? NaN) / wsifyFps).toFixed(2)} (aim ≥ 1).\n`)
  console.log('3. gateway memory per idle viewer (target: the bench\'s own minimal RFB server, 64×48 static framebuffer: QEMU would hold a framebuffer per client)\n')
  console.log(table(rows3))
  console.log('\nRSS of the gateway process (/proc/<pid>/status) 3 s after minting vs 3 s after every viewer finished its handshake and first frame. Aim < 64 KB.\n')
  console.log('4. click-to-pixels in headless Chromium (persistent profile: runs 2–11 have the page\'s assets cached)\n')
  console.log(table(rows4))
  console.log(`\nAPI→lit: from the POST …/console call to the first animation frame with lit pixels on the console canvas; navigation→lit: from the page's navigation start.${protocols.length === 1 ? ' guacamole: GUACD_HOST not set, skipped.' : ''}`)
}

try {
  await main()
} finally {
  for (const fn of cleanups.reverse()) await fn().catch(() => {})
}
