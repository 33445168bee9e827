import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Session } from 'node:inspector/promises'
import { cpuBetween, cpuSnapshot, perCall, pidsNamed, processCpuMs } from '../src/cpu.js'
import { summarizeProfile } from '../src/cpuprofile-summary.js'

/** Keeps this thread busy until the kernel has charged it `ms` of CPU (as process.cpuUsage reads it). */
function burn (ms: number): number {
  const start = process.cpuUsage()
  let x = 0
  for (;;) {
    for (let i = 0; i < 1e5; i++) x += Math.sqrt(i)
    const u = process.cpuUsage(start)
    if ((u.user + u.system) / 1000 >= ms) return x
  }
}

test('processCpuMs reads what the kernel charged this process, as process.cpuUsage does', () => {
  const before = processCpuMs(process.pid)
  const own0 = process.cpuUsage()
  burn(300)
  const after = processCpuMs(process.pid)
  const own = process.cpuUsage(own0)
  assert.ok(before !== undefined && after !== undefined)
  const fromProc = after - before
  const fromNode = (own.user + own.system) / 1000
  // /proc counts in clock ticks (10 ms at CLK_TCK 100); other threads of this process (GC) may add a little.
  assert.ok(Math.abs(fromProc - fromNode) <= 30 + fromNode * 0.1, `/proc ${fromProc} ms, process.cpuUsage ${fromNode} ms`)
})

test('a process that does not exist reads as undefined, and pidsNamed finds this one by its command name', () => {
  assert.equal(processCpuMs(2 ** 22 + 12345), undefined) // above pid_max's largest value
  assert.ok(pidsNamed('node').includes(process.pid))
  assert.deepEqual(pidsNamed('no-such-command-porthole'), [])
})

test('cpuBetween sums the system without the bench client, perCall divides by calls', () => {
  const procs = [{ name: 'self', pids: () => [process.pid], shared: false }]
  const a = cpuSnapshot(procs)
  burn(100)
  const use = cpuBetween(a, cpuSnapshot(procs))
  assert.ok((use.ms.self as number) >= 80, `self ${use.ms.self}`)
  assert.equal(use.systemMs, use.ms.self) // `bench` is this process too, but it is not summed
  assert.ok((use.ms.bench as number) >= 90)
  const per = perCall(use, 4)
  assert.equal(per.all, use.systemMs / 4)
})

test('summarizeProfile charges a real V8 profile\'s busy time to the function that burnt it', async () => {
  const s = new Session()
  s.connect()
  await s.post('Profiler.enable')
  await s.post('Profiler.start')
  const fromUs = Number(process.hrtime.bigint() / 1000n)
  burn(300)
  const toUs = Number(process.hrtime.bigint() / 1000n)
  const { profile } = await s.post('Profiler.stop')
  s.disconnect()
  const whole = summarizeProfile(profile as never, 5)
  // V8 may inline burn() into this test's function once it is hot: its samples then belong to the caller.
  assert.match(whole.byFunction[0]?.what ?? '', /^(burn|\(anonymous\)) bench\/(dist\/)?test\/cpu\.test\.js:\d+$/)
  assert.ok((whole.byFunction[0]?.share ?? 0) > 0.5, JSON.stringify(whole.byFunction))
  // The window is on the clock process.hrtime reads: the burn lies inside it, an empty window counts everything.
  const inside = summarizeProfile(profile as never, 5, { fromUs, toUs })
  assert.equal(inside.windowed, true)
  assert.ok(inside.busyMs >= 200 && inside.busyMs <= whole.busyMs, `${inside.busyMs} of ${whole.busyMs}`)
  const none = summarizeProfile(profile as never, 5, { fromUs: 0, toUs: 1 })
  assert.equal(none.windowed, false)
  assert.equal(none.busyMs, whole.busyMs)
})
