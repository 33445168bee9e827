/**
 * Summarises V8 CPU profiles (`.cpuprofile`, as `node --cpu-prof` writes them): self time by function, and by
 * file (a dependency counted as one file: its package; time in native code and Node's own modules charged to
 * the nearest file that called it, so a socket write shows under ioredis or pino), idle time left out.
 *
 *   node bench/dist/src/cpuprofile-summary.js <file.cpuprofile | dir> [--top=15]
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { SourceMap, type SourceMapPayload } from 'node:module'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { table } from './stats.js'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number, columnNumber?: number }, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

export interface ProfileSummary {
  /** Sampled time that was not idle, ms. */
  busyMs: number
  /** Whether only the samples within the window asked for were counted (false: none fell in it, so all were). */
  windowed: boolean
  byFunction: Array<{ what: string, ms: number, share: number }>
  byFile: Array<{ what: string, ms: number, share: number }>
}

/** A script's URL as a short place: `pkg` for a dependency, the repository-relative path for ours, `node:…` for Node's own. */
export function placeOf (url: string): string {
  if (url === '') return '(native / V8)'
  const path = url.startsWith('file://') ? fileURLToPath(url) : url
  const nm = path.lastIndexOf('/node_modules/')
  if (nm !== -1) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/')
    const pkg = rest[0]?.startsWith('@') === true ? `${rest[0]}/${rest[1] ?? ''}` : rest[0] ?? ''
    return pkg
  }
  const m = /\/((?:services|packages|bench)\/.*)$/.exec(path)
  return m?.[1] ?? path
}

/**
 * Self time per function and per file. With `window` (µs on the profiled process's monotonic clock, which is
 * the one `process.hrtime` reads on Linux), only the samples taken within it; all when none fell in it.
 */
export function summarizeProfile (p: Profile, top = 15, window?: { fromUs: number, toUs: number }): ProfileSummary {
  unbundle(p)
  const byId = new Map(p.nodes.map(n => [n.id, n]))
  const selfIn = (from: number, to: number): Map<number, number> => {
    const self = new Map<number, number>()
    let at = p.startTime
    // timeDeltas[i] is the time from sample i-1 to sample i: charged to sample i's node.
    for (let i = 0; i < p.samples.length; i++) {
      const d = p.timeDeltas[i] ?? 0
      at += d
      if (at < from || at > to) continue
      const id = p.samples[i] as number
      self.set(id, (self.get(id) ?? 0) + d / 1000)
    }
    return self
  }
  let self = window === undefined ? new Map<number, number>() : selfIn(window.fromUs, window.toUs)
  const windowed = self.size > 0
  if (!windowed) self = selfIn(-Infinity, Infinity)
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  /** Where a sample's time is charged by file: the nearest frame, itself or a caller, in a package or our code (not native, not node:). */
  const ownerOf = (id: number): string => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const url = byId.get(at)?.callFrame.url ?? ''
      if (url !== '' && !url.startsWith('node:')) return placeOf(url)
    }
    const n = byId.get(id)
    return n === undefined ? '?' : n.callFrame.url === '' ? n.callFrame.functionName : placeOf(n.callFrame.url)
  }
  const fn = new Map<string, number>()
  const file = new Map<string, number>()
  let busy = 0
  for (const [id, ms] of self) {
    const n = byId.get(id)
    if (n === undefined || n.callFrame.functionName === '(idle)') continue
    busy += ms
    const place = placeOf(n.callFrame.url)
    const name = n.callFrame.functionName === '' ? '(anonymous)' : n.callFrame.functionName
    const key = n.callFrame.url === '' ? name : `${name} ${place}:${n.callFrame.lineNumber + 1}`
    fn.set(key, (fn.get(key) ?? 0) + ms)
    const fkey = ownerOf(id)
    file.set(fkey, (file.get(fkey) ?? 0) + ms)
  }
  const rank = (m: Map<string, number>): ProfileSummary['byFunction'] => [...m].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([what, ms]) => ({ what, ms, share: busy > 0 ? ms / busy : 0 }))
  return { busyMs: busy, windowed, byFunction: rank(fn), byFile: rank(file) }
}

/**
 * Frames in a bundled file (the services run from one: scripts/bundle-services.mjs) are charged to the module
 * they came from, through the bundle's source map beside it, so that "by file or package" still says which.
 */
function unbundle (p: Profile): void {
  const maps = new Map<string, { map: SourceMap, dir: string } | undefined>()
  const mapOf = (url: string): { map: SourceMap, dir: string } | undefined => {
    if (!maps.has(url)) {
      const file = `${fileURLToPath(url)}.map`
      maps.set(url, existsSync(file) ? { map: new SourceMap(JSON.parse(readFileSync(file, 'utf8')) as SourceMapPayload), dir: dirname(file) } : undefined)
    }
    return maps.get(url)
  }
  for (const n of p.nodes) {
    const f = n.callFrame
    if (!f.url.startsWith('file://') || !f.url.includes('/dist/bundle/')) continue
    const m = mapOf(f.url)
    const e = m?.map.findEntry(f.lineNumber, f.columnNumber ?? 0) as { originalSource?: string, originalLine?: number } | undefined
    if (m === undefined || e?.originalSource === undefined) continue
    f.url = e.originalSource.startsWith('file://') ? e.originalSource : pathToFileURL(resolve(m.dir, e.originalSource)).href
    f.lineNumber = e.originalLine ?? f.lineNumber
  }
}

/** The summary as text: two tables, shares in per cent of the busy time. */
export function formatSummary (title: string, s: ProfileSummary): string {
  const rows = (xs: ProfileSummary['byFunction']): Array<Record<string, string | number>> => xs.map(x => ({ 'self ms': x.ms, '% busy': x.share * 100, what: x.what }))
  return [`${title}: ${s.busyMs.toFixed(0)} ms busy (sampled, idle left out)`, 'by function:', table(rows(s.byFunction)), 'by file or package (native and node: time charged to the nearest calling file):', table(rows(s.byFile)), ''].join('\n')
}

/** The .cpuprofile files at `path` (a file, or every one in a directory), oldest first. */
export function profileFiles (path: string): string[] {
  if (!statSync(path).isDirectory()) return [path]
  return readdirSync(path).filter(f => f.endsWith('.cpuprofile')).map(f => join(path, f)).sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs)
}

export function summarizeFile (file: string, top = 15, window?: { fromUs: number, toUs: number }): ProfileSummary {
  return summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as Profile, top, window)
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const path = process.argv.slice(2).find(a => !a.startsWith('--'))
  const top = Number(process.argv.find(a => a.startsWith('--top='))?.slice('--top='.length) ?? 15)
  if (path === undefined) { console.error('usage: cpuprofile-summary <file.cpuprofile | dir> [--top=15]'); process.exit(2) }
  for (const f of profileFiles(path)) console.log(formatSummary(basename(f), summarizeFile(f, top)))
}
