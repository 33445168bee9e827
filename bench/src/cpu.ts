/**
 * CPU time per process, from /proc/<pid>/stat (utime + stime, every thread of the process), read around a
 * measured section: what one job or console URL costs each process of the system, whatever the latency.
 * Resolution: one clock tick (10 ms with CLK_TCK 100) per process and section, so divide by enough calls.
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import type { Stack } from '@porthole/testkit'

const ticksPerSecond = ((): number => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
})()

/** CPU ms `pid` has used so far (user + system, all threads), or undefined when it has gone. */
export function processCpuMs (pid: number): number | undefined {
  try {
    // Fields after the command name, which is in parentheses (and may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) * 1000 / ticksPerSecond
  } catch { return undefined }
}

/** The pids of every process whose command name (/proc/<pid>/comm) is `comm`. */
export function pidsNamed (comm: string): number[] {
  const out: number[] = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try { if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === comm) out.push(Number(d)) } catch { /* gone */ }
  }
  return out
}

/** The processes a measured section is charged to, by name; the shared daemons are found by command name. */
export type CpuProcesses = Array<{ name: string, pids: () => number[], shared: boolean }>

/** The shared daemons every job touches: the broker, Redis and libvirt (libvirtd, or the modular virtqemud). */
export const DAEMONS = [['rabbitmq', 'beam.smp'], ['redis', 'redis-server'], ['libvirtd', 'libvirtd'], ['virtqemud', 'virtqemud']] as const

/** The stack's Node services (as the stack runs them now: a restarted one is followed) and the shared daemons found running. */
export function stackProcesses (stack: Stack): CpuProcesses {
  const own: CpuProcesses = [...stack.procs.keys()].map(name => ({ name, pids: () => { const pid = stack.procs.get(name)?.pid; return pid === undefined ? [] : [pid] }, shared: false }))
  const daemons: CpuProcesses = DAEMONS.filter(([, comm]) => pidsNamed(comm).length > 0)
    .map(([name, comm]) => { const pids = pidsNamed(comm); return { name, pids: () => pids, shared: true } })
  return [...own, ...daemons]
}

/** CPU ms so far per process name (each name's pids summed); the bench process itself as `bench`. */
export function cpuSnapshot (procs: CpuProcesses): Map<string, number> {
  const m = new Map<string, number>()
  for (const p of procs) m.set(p.name, p.pids().reduce((sum, pid) => sum + (processCpuMs(pid) ?? 0), 0))
  const own = process.cpuUsage()
  m.set('bench', (own.user + own.system) / 1000)
  return m
}

/** CPU used by each process during a section. */
export interface CpuUse {
  /** ms per process name, `bench` (the measuring client) included. */
  ms: Record<string, number>
  /** ms summed over the system's processes (every one but `bench`). */
  systemMs: number
}

export function cpuBetween (before: Map<string, number>, after: Map<string, number>): CpuUse {
  const ms: Record<string, number> = {}
  let systemMs = 0
  for (const [name, a] of after) {
    const d = a - (before.get(name) ?? a)
    ms[name] = d
    if (name !== 'bench') systemMs += d
  }
  return { ms, systemMs }
}

/** Runs `fn` and returns its result with the CPU each process used meanwhile. */
export async function measureCpu<T> (procs: CpuProcesses, fn: () => Promise<T>): Promise<{ result: T, cpu: CpuUse }> {
  const before = cpuSnapshot(procs)
  const result = await fn()
  return { result, cpu: cpuBetween(before, cpuSnapshot(procs)) }
}

/** Each process's CPU ms per call (and the system's sum as `all`), for `n` calls. */
export function perCall (cpu: CpuUse, n: number): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [name, ms] of Object.entries(cpu.ms)) out[name] = ms / n
  out.all = cpu.systemMs / n
  return out
}
