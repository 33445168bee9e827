/**
 * The VNC relay against targets the test controls (a minimal RFB 3.8 server in this process), through the
 * real gateway process: the two handshakes run at once and in the right order, every failure on either side
 * closes the viewer with its code, a slow browser holds the target back, the bytes arrive intact, and a
 * viewer that stops answering pings is cut off (while pongs do not count as input for the idle timeout).
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes, randomFillSync } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { WebSocket } from 'ws'
import { CONSOLE_CLOSE, type ConsoleTarget } from '@porthole/contracts'
import { settledValue, waitFor, within } from '@porthole/testkit'
import { ByteQueue } from '../src/rfb.js'
import { fileScope, harness, type Harness } from './support.js'

const PING_SECONDS = 1
const IDLE_SECONDS = 8
const suite = fileScope(after)
// A gateway on its defaults (pings every 20 s, no idle timeout): the relay tests do not race its liveness checks.
let h: Harness
before(async () => { h = await harness(suite) })

// A second gateway, for the liveness tests, pinging every second and closing idle viewers after 8 s.
let live: Harness | undefined
async function liveness (): Promise<Harness> {
  live ??= await harness(suite, { envFor: { 'console-gateway': { CONSOLE_PING_SECONDS: String(PING_SECONDS), CONSOLE_IDLE_SECONDS: String(IDLE_SECONDS) } } })
  return live
}

/** The gateway process's resident memory, as the kernel counts it. */
async function gatewayRss (at = h): Promise<number> {
  const pid = at.stack.procs.get('console-gateway')?.pid
  assert.ok(pid !== undefined, 'the gateway runs')
  const kb = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1]
  return Number(kb) * 1024
}

const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b }
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** One connection the gateway made to a fake target. */
interface TargetConn {
  /** Everything the gateway sent so far, in order. */
  received: () => Buffer
  /** How many bytes the gateway sent so far (without copying them). */
  receivedBytes: () => number
  /** How many bytes had arrived when the target sent its version line, and when it sent its SecurityResult. */
  atVersion: number
  atResult: number
  /** Bytes the target has handed to its kernel of `payload` (the rest waits in its socket's queue). */
  flushed: number
  closed: Promise<void>
  /** With `stall`: starts reading the gateway's bytes again. */
  resume: () => void
}

interface TargetOptions {
  /** Wait this long after the TCP connection before the version line (a slow or distant target). */
  delayMs?: number
  /** Send the version line only once this has resolved (a target still connecting for as long as the test wants). */
  hold?: Promise<void>
  /** Ask for VNC authentication and refuse whatever answer comes. */
  refuse?: boolean
  /** Bytes sent right after the SecurityResult, before ClientInit (what a target may send unasked). */
  greet?: Buffer
  /** Sent after ServerInit, in 1 MiB writes. */
  payload?: Buffer
  /** End the connection after ServerInit (and the payload). */
  end?: boolean
  /** Stop reading after ClientInit (a target that takes nothing more until `resume`). */
  stall?: boolean
}

/** A minimal RFB 3.8 target: security None (or VNC authentication, refused), a 64×48 ServerInit named "fake". */
async function fakeTarget (o: TargetOptions = {}): Promise<{ target: ConsoleTarget, next: () => Promise<TargetConn> }> {
  const conns: TargetConn[] = []
  const waiting: Array<(c: TargetConn) => void> = []
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    const chunks: Buffer[] = []
    const q = new ByteQueue()
    let bytes = 0
    s.on('data', (b: Buffer) => { chunks.push(b); bytes += b.length; q.push(b) })
    const received = (): Buffer => Buffer.concat(chunks)
    const c: TargetConn = { received, receivedBytes: () => bytes, atVersion: -1, atResult: -1, flushed: 0, closed: new Promise(resolve => s.once('close', () => { sockets.delete(s); q.fail(new Error('closed')); resolve() })), resume: () => s.resume() }
    conns.push(c)
    waiting.shift()?.(c)
    void (async () => {
      await sleep(o.delayMs ?? 0)
      await o.hold
      c.atVersion = received().length
      s.write('RFB 003.008\n')
      await q.read(12)
      if (o.refuse === true) {
        s.write(Buffer.from([1, 2]))
        await q.read(1)
        s.write(randomBytes(16))
        await q.read(16)
        c.atResult = received().length
        const reason = Buffer.from('no')
        s.end(Buffer.concat([u32(1), u32(reason.length), reason]))
        return
      }
      s.write(Buffer.from([1, 1]))
      await q.read(1)
      c.atResult = received().length
      s.write(Buffer.concat([u32(0), o.greet ?? Buffer.alloc(0)]))
      await q.read(1) // ClientInit
      if (o.stall === true) s.pause()
      const name = Buffer.from('fake')
      s.write(Buffer.concat([Buffer.from([0, 64, 0, 48, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]), u32(name.length), name]))
      const p = o.payload
      if (p !== undefined) {
        for (let i = 0; i < p.length; i += 1 << 20) {
          const part = p.subarray(i, i + (1 << 20))
          s.write(part, () => { c.flushed += part.length })
        }
      }
      if (o.end === true) s.end()
    })().catch(() => {})
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  suite.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  return {
    target: { kind: 'vnc', host: '127.0.0.1', port: (server.address() as AddressInfo).port, ...(o.refuse === true ? { password: 'pw' } : {}) },
    next: async () => { const c = conns.shift(); return c ?? await new Promise(resolve => waiting.push(resolve)) }
  }
}

interface TestViewer {
  ws: WebSocket
  q: ByteQueue
  opened: Promise<number>
  /** The close code, and how many pings the gateway had sent this viewer by then. */
  closed: Promise<{ code: number, pings: number }>
  /** Pings the gateway sent this viewer so far. */
  pings: () => number
  /** From now on every message goes to `fn` instead of `q`. */
  tap: (fn: (b: Buffer) => void) => void
}

function viewer (sessionId: string, token: string, o: { autoPong?: boolean, at?: Harness } = {}): TestViewer {
  let pings = 0
  const at = o.at ?? h
  const ws = new WebSocket(`${at.stack.gatewayUrl.replace(/^http/, 'ws')}/s/${sessionId}/ws`, ['binary', `porthole.token.${token}`], { origin: at.origin, autoPong: o.autoPong ?? true })
  const q = new ByteQueue()
  let sink = (b: Buffer): void => q.push(b)
  ws.on('message', (d: Buffer) => sink(d))
  ws.on('error', () => {})
  ws.on('ping', () => { pings++ })
  const opened = new Promise<number>((resolve, reject) => { ws.once('open', () => resolve(Date.now())); ws.once('error', reject) })
  const closed = new Promise<{ code: number, pings: number }>(resolve => ws.once('close', (code) => { q.fail(new Error(`closed ${code}`)); resolve({ code, pings }) }))
  return { ws, q, opened, closed, pings: () => pings, tap: (fn) => { sink = fn } }
}

/** The browser's side of the handshake with the gateway, up to its SecurityResult; resolves when that arrived. */
async function browserHandshake (v: TestViewer): Promise<number> {
  await v.opened
  assert.equal((await v.q.read(12)).toString('latin1'), 'RFB 003.008\n')
  v.ws.send(Buffer.from('RFB 003.008\n'))
  assert.deepEqual([...await v.q.read(2)], [1, 1], 'offered only None')
  v.ws.send(Buffer.from([1]))
  assert.equal((await v.q.read(4)).readUInt32BE(0), 0)
  return Date.now()
}

async function readServerInit (v: TestViewer): Promise<string> {
  const init = await v.q.read(24)
  return (await v.q.read(init.readUInt32BE(20))).toString('utf8')
}

const SET_ENCODINGS = Buffer.from([2, 0, 0, 1, 0, 0, 0, 0])

/** A viewer relaying to a fake target: both handshakes done, ClientInit sent, ServerInit read. */
async function relaying (o: TargetOptions, at = h): Promise<{ v: TestViewer, c: TargetConn }> {
  const t = await fakeTarget(o)
  const m = await at.mint({ target: t.target })
  const v = viewer(m.sessionId, m.token, { at })
  await browserHandshake(v)
  v.ws.send(Buffer.from([1]))
  assert.equal(await readServerInit(v), 'fake')
  return { v, c: await t.next() }
}

test('the browser\'s handshake overlaps the target\'s; nothing reaches the target before its own is done, then ClientInit first', async () => {
  const greet = Buffer.from('unasked')
  let release = (): void => {}
  const t = await fakeTarget({ greet, hold: new Promise<void>(resolve => { release = resolve }) })
  const m = await h.mint({ target: t.target })
  const v = viewer(m.sessionId, m.token)
  // The target says nothing until released: a gateway that waited for it first could not finish this.
  await within(browserHandshake(v), 10_000, 'the browser\'s handshake while the target has not said a word')
  const c = await t.next()
  assert.equal(c.atVersion, -1, 'the target had not sent its version line yet')
  v.ws.send(Buffer.from([1])) // ClientInit (shared), then a message right behind it, both before the target is ready
  v.ws.send(SET_ENCODINGS)
  release()
  // What the target sent after its SecurityResult, then its ServerInit, in that order, after ours.
  assert.deepEqual(await v.q.read(greet.length), greet)
  assert.equal(await readServerInit(v), 'fake')
  await waitFor(() => c.received().length >= 12 + 1 + 1 + SET_ENCODINGS.length, 5000, 'the browser\'s messages at the target')
  assert.equal(c.atVersion, 0, 'the target received bytes before it sent its version line')
  assert.equal(c.atResult, 13, 'the target received more than its handshake before it sent its SecurityResult')
  assert.deepEqual(c.received(), Buffer.concat([Buffer.from('RFB 003.008\n'), Buffer.from([1]), Buffer.from([1]), SET_ENCODINGS]))
  v.ws.close()
  await v.closed
  await c.closed
})

test('a target that refuses the password after the browser\'s handshake is done closes the viewer with 4006', async () => {
  const t = await fakeTarget({ delayMs: 300, refuse: true })
  const m = await h.mint({ target: t.target })
  const v = viewer(m.sessionId, m.token)
  await browserHandshake(v)
  v.ws.send(Buffer.from([1]))
  const closed = await v.closed
  assert.equal(closed.code, 4006)
  const c = await t.next()
  assert.equal(c.received().length, 12 + 1 + 16, 'the browser\'s ClientInit must not reach a target that refused us')
})

test('a viewer that fails its handshake is closed at once (4000) while the target is still connecting, and the target is let go', async () => {
  let release = (): void => {}
  const t = await fakeTarget({ hold: new Promise<void>(resolve => { release = resolve }) })
  const m = await h.mint({ target: t.target })
  const v = viewer(m.sessionId, m.token)
  await v.q.read(12)
  v.ws.send(Buffer.from('HTTP/1.1 200\n'))
  // The target stays silent until released, so a close that comes did not wait for it.
  const closed = await within(v.closed, 10_000, 'the viewer to be closed while the target is still connecting')
  assert.equal(closed.code, CONSOLE_CLOSE.invalid.code)
  const c = await t.next()
  assert.equal(c.atVersion, -1, 'the target had not sent its version line yet')
  release() // the target finishes connecting after the viewer is gone
  await within(c.closed, 20_000, 'the gateway to let the target go')
  assert.equal(c.received().length, 12 + 1, 'only the gateway\'s own handshake reached the target')
})

test('a viewer that leaves while the target is connecting: the target\'s connection is dropped and the session freed', async () => {
  const t = await fakeTarget({ delayMs: 800 })
  const m = await h.mint({ target: t.target })
  const v = viewer(m.sessionId, m.token)
  await browserHandshake(v)
  v.ws.send(Buffer.from([1]))
  v.ws.close()
  await v.closed
  const c = await t.next()
  await c.closed
  assert.equal(c.received().length, 12 + 1, 'the ClientInit of a viewer that left must not reach the target')
  await waitFor(async () => (await h.sessions.connected([m.sessionId]))[0] === false, 5000, 'the session to be free')
})

test('a target that ends the connection: the browser gets its last bytes, then 4008 target-closed', async () => {
  const payload = randomBytes(300_000)
  const t = await fakeTarget({ payload, end: true })
  const m = await h.mint({ target: t.target })
  const v = viewer(m.sessionId, m.token)
  await browserHandshake(v)
  v.ws.send(Buffer.from([1]))
  assert.equal(await readServerInit(v), 'fake')
  assert.deepEqual(await v.q.read(payload.length), payload)
  const closed = await v.closed
  assert.equal(closed.code, 4008)
})

test('a slow browser holds the target back; what it reads after is the target\'s bytes, intact and in order', async (tt) => {
  // 48 MiB. On a machine whose kernel lets loopback buffers grow to tens of MiB much of it can get away from
  // the target into socket buffers, so the gateway's own memory, as the kernel counts it, is what says whether
  // the gateway took it in.
  const payload = randomFillSync(Buffer.allocUnsafe(48 * 1024 * 1024))
  const rss0 = await gatewayRss()
  const { v, c } = await relaying({ payload })
  // The browser stops reading: the gateway must stop reading the target too, not take it all in memory.
  v.ws.pause()
  const early = v.q.drain()
  const hash = createHash('sha256').update(early)
  let got = early.length
  const done = new Promise<void>(resolve => v.tap((b) => { hash.update(b); got += b.length; if (got >= payload.length) resolve() }))
  // Wait for the flow to stop rather than for a fixed time: held back, it stops early; taken in by the gateway,
  // it stops only when the whole payload is away — which the assertion below refuses.
  const flushedWhilePaused = await settledValue(() => c.flushed, 'the target\'s writes to stop while the browser reads nothing')
  const grown = await gatewayRss() - rss0
  tt.diagnostic(`while the browser read nothing the target got ${(flushedWhilePaused / 2 ** 20).toFixed(1)} of ${payload.length / 2 ** 20} MiB away; the gateway grew by ${(grown / 2 ** 20).toFixed(1)} MiB`)
  assert.equal(v.ws.readyState, WebSocket.OPEN, 'the viewer is still connected: the gateway holds the target back, the viewer is not gone')
  assert.ok(grown < payload.length / 2, `the gateway grew by ${grown} bytes while the target sent ${payload.length} to a browser that read nothing`)
  v.ws.resume()
  await done
  assert.equal(got, payload.length)
  assert.equal(hash.digest('hex'), createHash('sha256').update(payload).digest('hex'))
  v.ws.close()
  await v.closed
})

test('a target that stops reading holds the browser back; what it reads after is the browser\'s bytes, intact and in order', async (tt) => {
  const { v, c } = await relaying({ stall: true })
  await waitFor(() => c.received().length > 0, 5000, 'ClientInit at the target')
  const before = c.received().length
  // 48 messages of just under 1 MiB (the gateway's message limit). On a machine whose kernel lets loopback
  // receive buffers grow to tens of MiB they can all get away from the browser into socket buffers, so the
  // gateway's own memory, as the kernel counts it, is what says whether the gateway took them in.
  const parts = Array.from({ length: 48 }, () => randomFillSync(Buffer.allocUnsafe((1 << 20) - 64)))
  const rss0 = await gatewayRss()
  const total = parts.reduce((n, b) => n + b.length, 0)
  for (const b of parts) v.ws.send(b)
  // As above: the browser's queue stops shrinking, early when held back, at zero when it all got away.
  // Pongs to the gateway's pings queue behind the held-back bytes: a few bytes a second that do not count.
  const held = await settledValue(() => v.ws.bufferedAmount, 'the browser\'s queue to stop shrinking while the target reads nothing', { tolerance: 4096 })
  // The gateway stopped reading the browser instead of queueing it all for the target in its memory.
  const grown = await gatewayRss() - rss0
  assert.equal(v.ws.readyState, WebSocket.OPEN, 'the viewer is still connected: the gateway holds it back, it is not gone')
  tt.diagnostic(`while the target read nothing the browser got ${((total - held) / 2 ** 20).toFixed(1)} of ${(total / 2 ** 20).toFixed(1)} MiB away; the gateway grew by ${(grown / 2 ** 20).toFixed(1)} MiB`)
  assert.ok(grown < total / 2, `the gateway grew by ${grown} bytes while the browser sent ${total} to a target that read nothing`)
  c.resume()
  await waitFor(() => c.receivedBytes() - before >= total, 30_000, 'every byte at the target')
  const sent = createHash('sha256')
  for (const b of parts) sent.update(b)
  assert.equal(createHash('sha256').update(c.received().subarray(before)).digest('hex'), sent.digest('hex'))
  v.ws.close()
  await v.closed
})

test('a viewer that gives no sign of life through two pings is cut off and its session freed; messages are signs of life; pongs are not input', async () => {
  const lh = await liveness()
  const t = await fakeTarget()
  const [a, b, c] = [await lh.mint({ target: t.target }), await lh.mint({ target: t.target }), await lh.mint({ target: t.target })]
  const silent = viewer(a.sessionId, a.token, { autoPong: false, at: lh }) // a browser whose network went away
  const alive = viewer(b.sessionId, b.token, { at: lh }) // answers pings, sends no input
  const busy = viewer(c.sessionId, c.token, { autoPong: false, at: lh }) // its pongs stuck behind a backlog, its messages not
  let silentSentAt = 0 // pings the silent viewer had received when it sent its last message
  for (const v of [silent, alive, busy]) {
    await browserHandshake(v)
    v.ws.send(Buffer.from([1]))
    if (v === silent) silentSentAt = v.pings()
    assert.equal(await readServerInit(v), 'fake')
  }
  const requests = setInterval(() => busy.ws.send(Buffer.from([3, 1, 0, 0, 0, 0, 0, 64, 0, 48])), 300)
  assert.deepEqual(await lh.sessions.connected([a.sessionId, b.sessionId, c.sessionId]), [true, true, true])
  const cut = await within(silent.closed, 20_000, 'the silent viewer to be cut off')
  // Two pings unanswered (one more may have been on its way as the last message went): cut off, with no
  // close handshake (1006), not as idle.
  assert.equal(cut.code, 1006)
  const unanswered = cut.pings - silentSentAt
  assert.ok(unanswered >= 2 && unanswered <= 3, `cut off after ${unanswered} unanswered pings`)
  await waitFor(async () => (await lh.sessions.connected([a.sessionId]))[0] === false, 5000, 'the silent viewer\'s session to be free')
  assert.equal(alive.ws.readyState, WebSocket.OPEN, 'the viewer that answers pings stays')
  // Three more pings it does not answer, more than cut the silent one off: its messages keep it alive.
  const busyPings = busy.pings()
  await waitFor(() => busy.pings() >= busyPings + 3 || busy.ws.readyState !== WebSocket.OPEN, 20_000, 'three more pings to the busy viewer')
  assert.equal(busy.ws.readyState, WebSocket.OPEN, 'a viewer that sends messages is alive without pongs')
  const health = await (await fetch(`${lh.stack.gatewayUrl}/healthz`)).json() as { viewers: number }
  assert.equal(health.viewers, 2)
  // It answered every ping and sent nothing else: idle after CONSOLE_IDLE_SECONDS all the same.
  // Update requests are not input either.
  const idle = await within(Promise.all([alive.closed, busy.closed]), (IDLE_SECONDS + 20) * 1000, 'both viewers to be closed as idle').finally(() => clearInterval(requests))
  for (const i of idle) {
    assert.equal(i.code, 4007)
    // Not early: the gateway's own clock (a ping every PING_SECONDS) ran through most of the idle time first.
    assert.ok(i.pings >= IDLE_SECONDS / PING_SECONDS - 2, `closed as idle after ${i.pings} pings`)
  }
})

test('a viewer the gateway holds back (its target reads nothing) is not cut off for the pongs stuck behind its bytes', async () => {
  const lh = await liveness()
  const { v, c } = await relaying({ stall: true }, lh)
  await waitFor(() => c.receivedBytes() > 0, 5000, 'ClientInit at the target')
  // 16 MiB for a target that reads nothing: the gateway stops reading the viewer once 4 MiB wait for the target.
  for (let i = 0; i < 16; i++) v.ws.send(randomFillSync(Buffer.allocUnsafe((1 << 20) - 64)))
  await settledValue(() => v.ws.bufferedAmount, 'the browser\'s queue to stop shrinking', { tolerance: 4096 })
  // Three pings whose pongs wait behind the held-back bytes: more than cut a silent viewer off.
  const pings = v.pings()
  await waitFor(() => v.pings() >= pings + 3 || v.ws.readyState !== WebSocket.OPEN, 20_000, 'three more pings')
  assert.equal(v.ws.readyState, WebSocket.OPEN, 'the viewer the gateway itself does not read is still connected')
  v.ws.terminate()
  await v.closed
})
