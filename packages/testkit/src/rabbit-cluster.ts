/**
 * A three-node RabbitMQ cluster of the test's own on this machine: its own node names, AMQP and distribution
 * ports, data and log directories and Erlang cookie, run as the `rabbitmq` user (as the machine's broker is);
 * the machine's own `rabbit@localhost` is never touched or joined. Nodes 2 and 3 join node 1
 * (`rabbitmqctl join_cluster`). `close()` stops every node still running, kills any that does not stop, and
 * removes the directory. (The recipe: /work/shared/fixtures/rabbitmq-cluster, with own nodes only.)
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { waitFor, type Scope } from './index.js'
import { freePort } from './stack.js'

const run = promisify(execFile)

export interface RabbitNode {
  /** Erlang node name, e.g. `porthole-ab12-1@localhost`. */
  name: string
  port: number
  /** `127.0.0.1:port`, as the AMQP client names the node it is on (AmqpClient.node). */
  address: string
  /** The node's OS process id (to kill it as a crash would). */
  pid: number
}

export interface RabbitCluster {
  nodes: RabbitNode[]
  /** RABBITMQ_URL for the services: every node, comma-separated. */
  url: string
  /** rabbitmqctl against one node, as the cluster's user and cookie. */
  ctl: (node: RabbitNode, ...args: string[]) => Promise<string>
  /** The nodes a connection named `connectionName` (client_properties.connection_name) is on. */
  nodesOf: (connectionName: string) => Promise<RabbitNode[]>
  /** Kills a node's Erlang VM (SIGKILL: no goodbye to its clients or peers). */
  kill: (node: RabbitNode) => Promise<void>
  close: () => Promise<void>
}

export async function rabbitCluster (t: Scope, size = 3): Promise<RabbitCluster> {
  const id = randomBytes(3).toString('hex')
  const dir = mkdtempSync(join(tmpdir(), `porthole-rabbit-${id}-`))
  const home = join(dir, 'home')
  mkdirSync(home)
  const cookie = randomBytes(20).toString('hex').toUpperCase()
  writeFileSync(join(home, '.erlang.cookie'), cookie)
  chmodSync(join(home, '.erlang.cookie'), 0o400)
  const env = (extra: Record<string, string> = {}): string[] => Object.entries({ HOME: home, ...extra }).map(([k, v]) => `${k}=${v}`)
  const as = async (cmd: string, args: string[], extra: Record<string, string> = {}, timeout = 120_000): Promise<string> =>
    (await run('runuser', ['-u', 'rabbitmq', '--', 'env', ...env(extra), cmd, ...args], { timeout, encoding: 'utf8' })).stdout
  const nodes: RabbitNode[] = []
  // The CLI reads the rabbitmq user's own cookie whatever HOME says: it is given the cluster's.
  const ctl = async (node: RabbitNode, ...args: string[]): Promise<string> => await as('rabbitmqctl', ['--erlang-cookie', cookie, '-q', '-n', node.name, ...args], {}, 60_000)

  const close = async (): Promise<void> => {
    for (const [i, n] of nodes.entries()) {
      const pid = n.pid > 0 ? n.pid : Number(readFileIfAny(join(dir, `n${i + 1}`, 'pid')))
      await ctl(n, 'stop').catch(() => {})
      // Never `kill 0` (the whole process group): only a pid the node wrote.
      if (!(pid > 0)) continue
      await waitFor(async () => await run('kill', ['-0', String(pid)]).then(() => false, () => true), 60_000, `RabbitMQ node ${n.name} to exit`).catch(async () => {
        await run('kill', ['-9', String(pid)]).catch(() => {})
      })
    }
    rmSync(dir, { recursive: true, force: true })
  }
  t.after(close)
  await run('chown', ['-R', 'rabbitmq:rabbitmq', dir])
  await run('chmod', ['755', dir])

  for (let i = 1; i <= size; i++) {
    const name = `porthole-${id}-${i}@localhost`
    const port = await nodePort()
    const base = join(dir, `n${i}`)
    mkdirSync(join(base, 'mnesia'), { recursive: true })
    mkdirSync(join(base, 'log'), { recursive: true })
    writeFileSync(join(base, 'enabled_plugins'), '[].\n') // no management plugin: its port would clash
    // A config file of its own: the machine's names its listener (5672), and would win over RABBITMQ_NODE_PORT.
    writeFileSync(join(base, 'rabbitmq.conf'), 'loopback_users.guest = true\n')
    await run('chown', ['-R', 'rabbitmq:rabbitmq', base])
    const node: RabbitNode = { name, port, address: `127.0.0.1:${port}`, pid: 0 }
    nodes.push(node) // before it starts: close() stops it whatever happens next
    await as('rabbitmq-server', ['-detached'], {
      RABBITMQ_NODENAME: name,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(await nodePort()),
      RABBITMQ_MNESIA_BASE: join(base, 'mnesia'),
      RABBITMQ_LOG_BASE: join(base, 'log'),
      RABBITMQ_CONFIG_FILE: join(base, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(base, 'enabled_plugins'),
      RABBITMQ_PID_FILE: join(base, 'pid')
    })
    await as('rabbitmqctl', ['--erlang-cookie', cookie, '-q', '-n', name, 'wait', join(base, 'pid'), '--timeout', '120'], {}, 150_000)
    node.pid = Number((await ctl(node, 'eval', 'list_to_integer(os:getpid()).')).trim())
  }
  const first = nodes[0] as RabbitNode
  for (const n of nodes.slice(1)) {
    await ctl(n, 'stop_app')
    await ctl(n, 'join_cluster', first.name)
    await ctl(n, 'start_app')
  }
  await waitFor(async () => {
    const s = JSON.parse(await ctl(first, 'cluster_status', '--formatter', 'json')) as { running_nodes?: string[] }
    return s.running_nodes?.length === size
  }, 60_000, 'every RabbitMQ node to run in the cluster')

  return {
    nodes,
    url: nodes.map((n, i) => i === 0 ? `amqp://guest:guest@${n.address}` : n.address).join(','),
    ctl,
    async nodesOf (connectionName) {
      // Any running node lists the whole cluster's connections; each one's name ends in the node's own
      // address ("127.0.0.1:51390 -> 127.0.0.1:<node port>").
      for (const n of nodes) {
        const out = await ctl(n, 'list_connections', 'name', 'client_properties', '--formatter', 'json').catch(() => undefined)
        if (out === undefined) continue
        const rows = JSON.parse(out) as Array<{ name: string, client_properties: unknown }>
        const ports = new Set(rows.filter(r => JSON.stringify(r.client_properties).includes(`"${connectionName}"`)).map(r => Number(/-> [^:]+:(\d+)$/.exec(r.name)?.[1])))
        return nodes.filter(x => ports.has(x.port))
      }
      return []
    },
    async kill (node) {
      await run('kill', ['-9', String(node.pid)])
      await waitFor(async () => await run('kill', ['-0', String(node.pid)]).then(() => false, () => true), 30_000, `RabbitMQ node ${node.name} to die`)
    },
    close
  }
}

/**
 * A free port outside 35672-35682: RabbitMQ's CLI tools take their own distribution port from that range
 * (rabbitmq-env's CTL_DIST_PORT_MIN), so a node listening there fails when a rabbitmqctl runs beside it.
 */
async function nodePort (): Promise<number> {
  for (;;) {
    const p = await freePort()
    if (p < 35672 || p > 35682) return p
  }
}

function readFileIfAny (path: string): string {
  try { return readFileSync(path, 'utf8').trim() } catch { return '' }
}
