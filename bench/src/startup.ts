/**
 * Start-up time of each service: from spawning `node --enable-source-maps services/<name>/dist/bundle/main.js`
 * (its bundle, as production runs it: services/services.json) to its "ready" log line, against the real
 * RabbitMQ and Redis, N times each; the same from a copy of the bundle whose V8 code cache is removed before
 * each start (a first start, or one whose cache was stale); the same from `dist/src/main.js` (tsc's output, one
 * file per module, as services ran before they were bundled); and, in the same run, three floors: a node process
 * that prints a line at once (node's own start), and a bare fastify hello-world that listens on a port and then
 * prints a line (what any fastify service pays), unbundled and bundled as the services are (scripts/lib/bundle.mjs,
 * with its code cache).
 *
 * Beside the wall-clock time, the CPU time (user + system, from /proc, in 10 ms ticks) the process had used by
 * then: on a machine shared with other work the wall clock waits for the CPU, the CPU time does not.
 *
 *   npm run bench -- startup [--quick] [--runs=N]
 *
 * Each service has a namespace of its own for the run (removed at the end) and is started once before the
 * measured starts, so that its queues exist as they do when a service restarts after a crash; it is stopped
 * with SIGTERM before the next start. The runs are interleaved, so that a noisy neighbour weighs on every row
 * alike.
 */
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { ALL_SERVICES, mainOf, REPO_ROOT, startStack, type Stack } from '@porthole/testkit'
import { percentile, table } from './stats.js'

const quick = process.argv.includes('--quick')
const runsArg = process.argv.find(a => a.startsWith('--runs='))
const RUNS = runsArg !== undefined ? Number(runsArg.slice('--runs='.length)) : quick ? 5 : 15

interface Sample { ms: number, cpu: number }

/** CPU time (user + system) a running process has used so far, in ms (Linux /proc, 10 ms ticks). */
function cpuMs (pid: number | undefined): number {
  if (pid === undefined) return NaN
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(f[11]) + Number(f[12])) * 10
  } catch { return NaN }
}

/** Spawns `node args` and times it to its first stdout line "ready"; then ends it. */
async function floor (args: string[], cwd = REPO_ROOT): Promise<Sample> {
  const t0 = performance.now()
  const p = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'] })
  return await new Promise((resolve, reject) => {
    let buf = ''
    let settled = false
    p.stdout.setEncoding('utf8').on('data', (s: string) => {
      buf += s
      if (settled || !buf.split('\n').includes('ready')) return
      settled = true
      const sample = { ms: performance.now() - t0, cpu: cpuMs(p.pid) }
      p.once('exit', () => resolve(sample))
      p.kill('SIGTERM')
    })
    p.once('error', reject)
    p.once('exit', (code) => { if (!settled) reject(new Error(`node ${args.join(' ')} exited with ${code ?? 'a signal'} before it was ready`)) })
  })
}

const NODE_ONLY = "console.log('ready'); setInterval(() => {}, 60_000)"
const HELLO = `import Fastify from 'fastify'
const app = Fastify()
app.get('/', async () => 'hello')
await app.listen({ host: '127.0.0.1', port: 0 })
console.log('ready')
process.on('SIGTERM', () => { void app.close() })`

type Name = typeof ALL_SERVICES[number]
const UNBUNDLED = 'dist/src/main.js'

/**
 * The bare fastify peer bundled as the services are (scripts/bundle-services.mjs), into a temporary directory
 * in the repository (what the bundle leaves to node's loader is found in node_modules from there).
 */
function bundledHello (): { file: string, remove: () => void } {
  const dir = mkdtempSync(join(REPO_ROOT, 'bench', 'dist', 'startup-peer-'))
  const remove = (): void => rmSync(dir, { recursive: true, force: true })
  writeFileSync(join(dir, 'hello.mjs'), HELLO)
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'bundle-services.mjs'), '--one', join(dir, 'hello.mjs'), join(REPO_ROOT, 'services', 'api'), join(dir, 'out')], { stdio: 'inherit' })
  if (r.status !== 0) { remove(); throw new Error('could not bundle the bare fastify peer') }
  return { file: join(dir, 'out', 'main.js'), remove }
}

/** Starts one service of its stack and times it to "ready"; then stops it. */
async function service (stack: Stack, name: Name): Promise<Sample> {
  const t0 = performance.now()
  await stack.start(name)
  const sample = { ms: performance.now() - t0, cpu: cpuMs(stack.procs.get(name)?.pid) }
  await stack.stop(name)
  return sample
}

function row (what: string, samples: Sample[], base?: number, baseBundled?: number): Record<string, string | number> {
  const ms = samples.map(s => s.ms).sort((a, b) => a - b)
  const cpu = samples.map(s => s.cpu).sort((a, b) => a - b)
  const p50 = percentile(ms, 50)
  return {
    what,
    runs: ms.length,
    'p50 ms': p50,
    'max ms': ms[ms.length - 1] ?? NaN,
    'p50 CPU ms': percentile(cpu, 50),
    'max CPU ms': cpu[cpu.length - 1] ?? NaN,
    'p50 / fastify': base === undefined ? '' : (p50 / base).toFixed(2),
    'p50 / bundled fastify': baseBundled === undefined ? '' : (p50 / baseBundled).toFixed(2)
  }
}

/**
 * A copy of a service's bundle directory beside it (the same depth: its paths are relative), whose V8 code cache
 * is removed before each start: a first start's time, or one whose cache was stale (scripts/lib/bundle-main.mjs).
 */
function uncachedBundle (name: Name): { main: string, beforeStart: () => void, remove: () => void } {
  const bundleDir = dirname(mainOf(name))
  const copy = `bundle-bench-uncached-${randomBytes(4).toString('hex')}`
  const dir = join(dirname(bundleDir), copy)
  cpSync(bundleDir, dir, { recursive: true })
  return {
    main: `${relative(dirname(dirname(bundleDir)), dir)}/main.js`,
    beforeStart: () => rmSync(join(dir, 'bundle.js.cache'), { force: true }),
    remove: () => rmSync(dir, { recursive: true, force: true })
  }
}

const cleanups: Array<() => Promise<void>> = []
// Per service, one stack running its bundle, one its bundle without a code cache and one tsc's output; each
// started once first, to declare its queues: the measured starts are restarts.
const stacks: Array<{ what: string, name: Name, stack: Stack, samples: Sample[], beforeStart?: () => void }> = []
for (const name of ALL_SERVICES) {
  for (const how of ['bundle', 'uncached', 'unbundled'] as const) {
    const uncached = how === 'uncached' ? uncachedBundle(name) : undefined
    if (uncached !== undefined) cleanups.push(async () => { uncached.remove() })
    const main = how === 'unbundled' ? UNBUNDLED : uncached?.main
    const stack = await startStack({ after: fn => { cleanups.push(fn) } }, { services: [], keepLogs: false, mainFor: main === undefined ? {} : { [name]: main } })
    await service(stack, name)
    const what = how === 'bundle' ? name : how === 'uncached' ? `${name}, bundle without its code cache` : `${name}, unbundled (${UNBUNDLED})`
    stacks.push({ what, name, stack, samples: [], beforeStart: uncached?.beforeStart })
  }
}
const hello = bundledHello()
cleanups.push(async () => { hello.remove() })
const nodeOnly: Sample[] = []
const fastify: Sample[] = []
const fastifyBundled: Sample[] = []
try {
  for (let i = 0; i < RUNS; i++) {
    nodeOnly.push(await floor(['-e', NODE_ONLY]))
    fastify.push(await floor(['--input-type=module', '-e', HELLO], join(REPO_ROOT, 'services', 'api')))
    fastifyBundled.push(await floor(['--enable-source-maps', hello.file]))
    for (const s of stacks) {
      s.beforeStart?.()
      s.samples.push(await service(s.stack, s.name))
    }
  }
} finally {
  for (const fn of cleanups) await fn()
}
const base = percentile(fastify.map(s => s.ms).sort((a, b) => a - b), 50)
const baseBundled = percentile(fastifyBundled.map(s => s.ms).sort((a, b) => a - b), 50)
console.log(`spawn → "ready" line, ${RUNS} runs each, interleaved; real RabbitMQ and Redis on this machine`)
console.log(table([
  row('floor: node, printing a line', nodeOnly),
  row('floor: bare fastify hello-world, listening', fastify, base, baseBundled),
  row('floor: the same, bundled', fastifyBundled, base, baseBundled),
  ...stacks.map(s => row(s.what, s.samples, base, baseBundled))
]))
