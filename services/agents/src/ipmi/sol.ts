/**
 * Serial-over-LAN for the `serial` console protocol. Only the agents run ipmitool and only they hold BMC
 * passwords, so the console gateway does not talk to the BMC: it connects to this bridge, a small TCP server
 * in the agents process, which runs `ipmitool … sol activate` and pipes its bytes both ways.
 *
 * - A console job for `serial` registers a ticket: a random token (256 bits) under which Redis keeps, for the
 *   session's lifetime, the BMC connection and the job's id sealed with PORTHOLE_SECRET_KEY (aad bound to the
 *   token's hash; Redis holds only that hash as the key). Any agent replica can serve it. The token travels
 *   to the gateway sealed inside the console target (`{kind:'sol', host, port, ticket}`).
 * - The bridge listens on 127.0.0.1 unless SOL_BRIDGE_HOST says otherwise, and serves only the gateway: the
 *   first line must be a hello signed with SOL_BRIDGE_SECRET (`PORTHOLE-SOL/2 <token> <sessionId> <ms>
 *   <nonce> <mac>`, see readSolHello in @porthole/shared/crypto). A peer whose hello is not (a wrong or no
 *   mac, a time off by more than 30 s, anything else) is dropped without a byte.
 * - A ticket is good for one connection, and only for the console session minted from its job while that
 *   session is neither revoked nor expired: the bridge takes it from Redis (GETDEL, so of two connections
 *   with one ticket only one gets it), checks the session, and registers its successor, derived from the
 *   secret, the ticket and the hello's nonce, which the gateway derives too and keeps for its next
 *   connection. It answers `CLAIMED\n` at once, then `OK\n` once the SOL session is operational (then raw
 *   bytes both ways) or `ERR <reason>\n` and closes (`auth`: the BMC refused the credentials;
 *   `unreachable`: no SOL session could be set up). A ticket that is unknown, used, expired or whose session
 *   ended gets `ERR invalid\n` instead of `CLAIMED`.
 * - A live connection ends when its session is revoked or expires (checked every SESSION_WATCH_MS) and at
 *   the ticket's expiry, whatever the gateway does.
 * - Before `sol activate` it runs `sol deactivate` to clear a session a crashed client left behind (a BMC
 *   allows one SOL session per payload instance).
 * - ipmitool runs under `stdbuf -o0` (its SOL output is stdio-buffered on a pipe otherwise).
 * - The password reaches ipmitool only through `IPMI_PASSWORD` (with `-E`), never argv or a log line; no
 *   ticket, hello or secret reaches a log line either.
 * - When the gateway's side closes, ipmitool's stdin is closed (it ends the SOL session with the BMC
 *   cleanly), then it is terminated and killed if it lingers. When ipmitool ends, the TCP side is closed.
 */
import { spawn } from 'node:child_process'
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { SOL_ANSWER, SOL_MAX_HELLO, nextSolTicket, readSolHello, type SolRefusal } from '@porthole/shared/crypto'
import { AuthError, type PortholeError } from '@porthole/contracts/errors'
import type { Logger } from '@porthole/shared/logging'
import { childEnv, classifyFailure, runIpmitool, type Bmc } from './ipmitool.js'
import type { ClaimedTicket, SolTickets } from './sol-tickets.js'

/** How often live connections check that their console session is still live (revocation, expiry). */
const SESSION_WATCH_MS = 250
const HELLO_TIMEOUT_MS = 5000
/** How long `sol activate` may take to say the session is operational. */
const ACTIVATE_TIMEOUT_MS = 15_000
const OPERATIONAL = /\[SOL Session operational[^\n]*\n/

export interface SolBridgeOptions {
  host: string
  port: number
  tickets: SolTickets
  /** SOL_BRIDGE_SECRET, decoded: the key of every hello's mac. */
  secret: Buffer
  ipmitool: string
  /** The PATH ipmitool and stdbuf run with (the agents' PATH setting; default /usr/bin:/bin). */
  searchPath?: string | undefined
  log: Logger
}

export interface SolBridge {
  /** The port it listens on (the configured one, or the one bound for port 0). */
  port: number
  /** Live bridge connections. */
  readonly count: number
  close: () => Promise<void>
}

/** The argv of `sol activate` / `sol deactivate`: never the password (ipmitool reads IPMI_PASSWORD with `-E`). */
function solArgs (bmc: Bmc, command: 'activate' | 'deactivate'): string[] {
  return ['-I', 'lanplus', '-C', String(bmc.cipherSuite), '-H', bmc.host, '-p', String(bmc.port), '-U', bmc.username, '-E', 'sol', command]
}

export async function startSolBridge (o: SolBridgeOptions): Promise<SolBridge> {
  const log = o.log.child({ component: 'sol-bridge' })
  /** Live connections: how each stops, and the console session it serves. */
  const live = new Map<() => void, string>()
  // Revocation and expiry end a live connection here too, not only through the gateway.
  let watching = false
  const watch = setInterval(() => {
    if (watching || live.size === 0) return
    watching = true
    const bySession = new Map<string, Array<() => void>>()
    for (const [stop, id] of live) bySession.set(id, [...bySession.get(id) ?? [], stop])
    const ids = [...bySession.keys()]
    o.tickets.sessionsLive(ids).then((alive) => {
      ids.forEach((id, i) => {
        if (alive[i] === true) return
        log.info({ sessionId: id }, 'console session revoked or expired; closing its sol connection')
        for (const stop of bySession.get(id) ?? []) stop()
      })
    }, () => { /* Redis down: the next round asks again */ }).finally(() => { watching = false })
  }, SESSION_WATCH_MS)
  watch.unref()

  const server: Server = createServer({ noDelay: true }, (socket) => {
    socket.on('error', (err) => log.debug({ err: { message: err.message } }, 'bridge socket error'))
    serve(socket).catch((err: unknown) => {
      log.warn({ err: { message: (err as Error).message } }, 'sol bridge connection failed')
      socket.destroy()
    })
  })

  async function serve (socket: Socket): Promise<void> {
    const peer = socket.remoteAddress
    const first = await readLine(socket)
    const hello = first === undefined ? undefined : readSolHello(o.secret, first.line)
    if (first === undefined || hello === undefined) {
      // Not the gateway (or a replay past the time window): it learns nothing, not even that this is a bridge.
      socket.destroy()
      log.info({ peer }, 'sol bridge peer dropped: no validly signed hello')
      return
    }
    const ticket = await o.tickets.claim(hello.token, hello.sessionId, nextSolTicket(o.secret, hello.token, hello.nonce))
    if (ticket === undefined) { refuse(socket, 'invalid'); log.info({ peer, sessionId: hello.sessionId }, 'sol bridge connection refused: unknown, used or expired ticket, or its session ended'); return }
    socket.write(SOL_ANSWER.claimed)
    const bmc = ticket.bmc
    const l = log.child({ bmc: `${bmc.host}:${bmc.port}`, peer, sessionId: ticket.sessionId })

    // A session left by a client that died would make `activate` fail with "SOL payload already active".
    const ac = new AbortController()
    const onGone = (): void => ac.abort()
    socket.once('close', onGone)
    try {
      await runIpmitool(bmc, ['sol', 'deactivate'], { ipmitool: o.ipmitool, searchPath: o.searchPath, signal: ac.signal, timeoutMs: 10_000, packetTimeoutS: 1, retransmits: 2 })
    } catch (err) {
      if (err instanceof AuthError) { refuse(socket, 'auth'); l.info('sol bridge: the BMC refused the credentials'); return }
      // "SOL payload already de-activated" (exit 1) is the usual answer; anything serious shows at activate.
    } finally {
      socket.off('close', onGone)
    }
    if (socket.destroyed) return
    socket.pause()
    activate(socket, ticket, first.rest, l)
  }

  function activate (socket: Socket, ticket: ClaimedTicket, early: Buffer, l: Logger): void {
    const { bmc, expiresAt } = ticket
    // ipmitool writes SOL data with stdio: on a pipe it would sit in a 4 KiB buffer; stdbuf (coreutils)
    // makes its stdout unbuffered, so each character the host sends reaches the browser at once.
    const child = spawn('stdbuf', ['-o0', o.ipmitool, ...solArgs(bmc, 'activate')], {
      env: childEnv(bmc, o.searchPath),
      stdio: ['pipe', 'pipe', 'pipe']
    })
    let operational = false
    let head = Buffer.alloc(0)
    let stderr = ''
    let ended = false
    const started = Date.now()
    const timers: NodeJS.Timeout[] = []

    const stop = (): void => {
      if (ended) return
      ended = true
      for (const t of timers) clearTimeout(t)
      live.delete(stop)
      // Closing stdin lets ipmitool deactivate the payload itself; then it is asked, then made, to go.
      child.stdin.end()
      const term = setTimeout(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM') }, 1500)
      const kill = setTimeout(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }, 4000)
      term.unref(); kill.unref()
      child.once('close', () => { clearTimeout(term); clearTimeout(kill) })
      if (!socket.destroyed) socket.end()
    }
    live.set(stop, ticket.sessionId)

    child.stdin.on('error', () => {})
    child.stderr.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 16384) stderr += d })
    child.once('error', (err: NodeJS.ErrnoException) => {
      l.warn({ code: err.code }, 'ipmitool could not be started')
      if (!operational && !socket.destroyed) refuse(socket, 'unreachable')
      stop()
    })
    child.stdout.on('data', (d: Buffer) => {
      if (operational) {
        if (!socket.write(d)) { child.stdout.pause(); socket.once('drain', () => child.stdout.resume()) }
        return
      }
      head = Buffer.concat([head, d])
      const m = OPERATIONAL.exec(head.toString('latin1'))
      if (m === null) {
        if (head.length > 4096) head = head.subarray(head.length - 1024)
        return
      }
      operational = true
      clearTimeout(activateTimer)
      const rest = head.subarray(m.index + m[0].length)
      head = Buffer.alloc(0)
      socket.write(SOL_ANSWER.ok)
      if (rest.length > 0) socket.write(rest)
      if (early.length > 0) child.stdin.write(early)
      socket.on('data', (b: Buffer) => {
        if (!child.stdin.write(b)) { socket.pause(); child.stdin.once('drain', () => socket.resume()) }
      })
      socket.resume()
      l.info({ ms: Date.now() - started }, 'sol session started')
    })
    child.once('close', (code) => {
      if (!operational) {
        const why = classifyFailure(bmc, stderr, ['sol', 'activate'])
        refuse(socket, why.code === 'auth' ? 'auth' : 'unreachable')
        l.warn({ code, reason: firstLine(why, stderr) }, 'sol session could not be activated')
      } else {
        l.info({ code, ms: Date.now() - started }, 'sol session ended')
      }
      stop()
    })
    socket.once('close', () => stop())
    socket.once('end', () => stop())
    const activateTimer = setTimeout(() => { if (!operational) { refuse(socket, 'unreachable'); stop() } }, ACTIVATE_TIMEOUT_MS)
    timers.push(activateTimer)
    timers.push(setTimeout(() => { l.info('sol ticket expired; closing'); stop() }, Math.max(0, Math.min(expiresAt - Date.now(), 2_147_483_647))))
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.port, o.host, () => { server.off('error', reject); resolve() })
  })
  const port = (server.address() as AddressInfo).port
  log.info({ host: o.host, port }, 'sol bridge listening')

  return {
    port,
    get count () { return live.size },
    async close () {
      clearInterval(watch)
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      for (const stop of [...live.keys()]) stop()
      await closed
    }
  }
}

/** Reads the first line (without its newline) and whatever followed it; undefined when none came in time. */
async function readLine (socket: Socket): Promise<{ line: string, rest: Buffer } | undefined> {
  return await new Promise(resolve => {
    let buf = Buffer.alloc(0)
    const done = (v: { line: string, rest: Buffer } | undefined): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('close', onClose)
      resolve(v)
    }
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d])
      const i = buf.indexOf(0x0a)
      if (i === -1) { if (buf.length > SOL_MAX_HELLO) done(undefined); return }
      socket.pause()
      done({ line: buf.subarray(0, i).toString('latin1').replace(/\r$/, ''), rest: buf.subarray(i + 1) })
    }
    const onClose = (): void => done(undefined)
    const timer = setTimeout(() => done(undefined), HELLO_TIMEOUT_MS)
    socket.on('data', onData)
    socket.once('close', onClose)
  })
}

function refuse (socket: Socket, reason: SolRefusal): void {
  if (socket.destroyed) return
  socket.end(SOL_ANSWER.refused(reason))
  setTimeout(() => socket.destroy(), 2000).unref()
}

function firstLine (err: PortholeError, stderr: string): string {
  const line = stderr.split('\n').map(s => s.trim()).find(s => s !== '' && !s.startsWith('Info:'))
  return (line ?? err.message).slice(0, 160)
}
