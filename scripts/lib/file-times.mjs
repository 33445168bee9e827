// A node:test reporter that prints nothing until the run ends, then the files that took longest (the sum of
// their top-level tests' durations) and the sum over all files: where a slow run spends its time, in its log.
import { sourceOf } from './skip-summary.mjs'

const SHOWN = 12

export default async function * fileTimes (source) {
  /** @type {Map<string, number>} */
  const byFile = new Map()
  for await (const event of source) {
    if ((event.type !== 'test:pass' && event.type !== 'test:fail') || event.data.nesting !== 0 || event.data.file === undefined) continue
    const ms = Number(event.data.details?.duration_ms ?? 0)
    const file = sourceOf(event.data.file)
    byFile.set(file, (byFile.get(file) ?? 0) + ms)
  }
  const all = [...byFile].sort((a, b) => b[1] - a[1])
  const total = all.reduce((s, [, ms]) => s + ms, 0)
  yield `run-tests: ${all.length} files, ${(total / 1000).toFixed(0)} s of tests; the slowest:\n`
  for (const [file, ms] of all.slice(0, SHOWN)) yield `  ${(ms / 1000).toFixed(1).padStart(7)} s  ${file}\n`
}
