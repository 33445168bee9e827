/**
 * A replicated Redis of the test's own: a primary, one replica and three Sentinels (`redis-server
 * --sentinel`), each on a free loopback port, in a temporary directory; never the machine's own Redis.
 * `close()` kills every process and removes the directory.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { waitFor, type Scope } from './index.js'
import { freePort } from './stack.js'

export interface SentinelGroup {
  /** The name the Sentinels monitor the primary under. */
  name: string
  /** REDIS_SENTINELS for the services. */
  sentinels: string
  /** The port of whichever server is the primary now, as the Sentinels say. */
  primaryPort: () => Promise<number>
  /**
   * A planned failover, as an operator makes one: the primary's writes are paused (CLIENT PAUSE WRITE) until
   * the replica has all of them, then the Sentinels promote the replica (SENTINEL FAILOVER); the writes
   * paused meanwhile meet a replica when they go on (READONLY) and the clients send them to the new primary.
   * Resolves once every Sentinel names the new primary. (An unplanned failover, the primary lost, may lose
   * the writes it had not passed on: Redis replicates asynchronously.)
   */
  failover: () => Promise<number>
  close: () => Promise<void>
}

export async function sentinelGroup (t: Scope, name = 'porthole'): Promise<SentinelGroup> {
  const dir = mkdtempSync(join(tmpdir(), 'porthole-sentinel-'))
  const procs: ChildProcess[] = []
  const clients: Redis[] = []
  const close = async (): Promise<void> => {
    for (const c of clients) c.disconnect()
    await Promise.all(procs.map(async p => {
      if (p.exitCode !== null || p.signalCode !== null) return
      const gone = new Promise(resolve => p.once('exit', resolve))
      p.kill('SIGKILL')
      await gone
    }))
    rmSync(dir, { recursive: true, force: true })
  }
  t.after(close)
  const run = (args: string[]): void => {
    const p = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir })
    p.stderr?.resume()
    procs.push(p)
  }
  const client = (port: number): Redis => {
    const c = new Redis({ host: '127.0.0.1', port, lazyConnect: false, maxRetriesPerRequest: 1, retryStrategy: () => 100 })
    c.on('error', () => {})
    clients.push(c)
    return c
  }
  const base = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]
  const primary = await freePort()
  const replica = await freePort()
  run(['--port', String(primary), ...base])
  run(['--port', String(replica), '--replicaof', '127.0.0.1', String(primary), ...base])
  const sentinelPorts: number[] = []
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    sentinelPorts.push(port)
    const conf = join(dir, `sentinel-${port}.conf`)
    // A file of its own per Sentinel: each rewrites its configuration as it learns the group.
    writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor ${name} 127.0.0.1 ${primary} 2`,
      `sentinel down-after-milliseconds ${name} 1000`, `sentinel failover-timeout ${name} 10000`, `sentinel parallel-syncs ${name} 1`, ''].join('\n'))
    run([conf, '--sentinel'])
  }
  const sentinels = sentinelPorts.map(client)
  const said = async (s: Redis): Promise<number> => Number((await s.call('SENTINEL', 'get-master-addr-by-name', name) as string[] | null)?.[1])
  // Ready when the replica is in sync and every Sentinel knows the two other Sentinels and holds the replica
  // as one it could promote: connected, answering INFO, its link to the primary up. A replica a Sentinel has
  // only just heard of (from the primary's INFO) is listed at once but flagged `disconnected` until the
  // Sentinel's own connection to it is made, and SENTINEL FAILOVER then answers NOGOODSLAVE.
  const rep = client(replica)
  await waitFor(async () => /master_link_status:up/.test(await rep.info('replication')), 30_000, 'the Redis replica to sync with its primary')
  for (const s of sentinels) {
    await waitFor(async () => {
      const replicas = (await s.call('SENTINEL', 'replicas', name) as string[][]).map(fields)
      const others = await s.call('SENTINEL', 'sentinels', name) as unknown[]
      const r = replicas[0]
      return replicas.length === 1 && r?.flags === 'slave' && r['master-link-status'] === 'ok' && (r.runid ?? '') !== '' &&
        others.length === 2 && await said(s) === primary
    }, 30_000, 'each Sentinel to hold the replica as promotable and know the other Sentinels')
  }
  return {
    name,
    sentinels: sentinelPorts.map(p => `127.0.0.1:${p}`).join(','),
    primaryPort: async () => await said(sentinels[0] as Redis),
    async failover () {
      const before = await said(sentinels[0] as Redis)
      const next = before === primary ? replica : primary
      const old = client(before)
      const promoted = client(next)
      const offset = async (c: Redis): Promise<number> => Number(/(?:master_repl_offset|slave_repl_offset):(\d+)/.exec(await c.info('replication'))?.[1])
      await old.call('CLIENT', 'PAUSE', '30000', 'WRITE')
      try {
        const target = await offset(old)
        await waitFor(async () => await offset(promoted) >= target, 30_000, 'the replica to have every write of the primary')
        await (sentinels[0] as Redis).call('SENTINEL', 'failover', name)
        for (const s of sentinels) await waitFor(async () => await said(s) === next, 30_000, 'every Sentinel to name the new primary')
        await waitFor(async () => /role:master/.test(await promoted.info('replication')), 30_000, 'the replica to become the primary')
        // What the Sentinels do next, done now: their own reconfiguration (a MULTI … EXEC) waits out the pause.
        await old.call('REPLICAOF', '127.0.0.1', String(next))
      } finally {
        await old.call('CLIENT', 'UNPAUSE').catch(() => {})
      }
      return next
    },
    close
  }
}

/** A Sentinel's flat `[field, value, …]` reply as an object. */
function fields (flat: string[]): Record<string, string> {
  const o: Record<string, string> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) o[flat[i] as string] = flat[i + 1] as string
  return o
}
