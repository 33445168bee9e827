// A node:test reporter that prints nothing until the run ends, then one line per reason some tests were
// skipped: how many, why, and in which files (as sources, not compiled paths). scripts/run-tests.mjs adds it
// beside the spec reporter, so a skip cannot scroll by unnoticed in a long run.
import { relative } from 'node:path'

const ROOT = new URL('../..', import.meta.url).pathname

/** `services/x/dist/test/a.test.js` → `services/x/test/a.test.ts`; `test/dist/e2e/…` → `test/e2e/…`. */
export function sourceOf (file) {
  return relative(ROOT, file).replace(/^((?:services|packages)\/[^/]+)\/dist\/test\//, '$1/test/').replace(/^test\/dist\//, 'test/').replace(/\.js$/, '.ts')
}

export default async function * skipSummary (source) {
  /** @type {Map<string, {count: number, files: Set<string>}>} */
  const byReason = new Map()
  for await (const event of source) {
    if (event.type !== 'test:pass' || event.data.skip === undefined || event.data.skip === false) continue
    const reason = event.data.skip === true ? 'no reason given' : String(event.data.skip)
    const r = byReason.get(reason) ?? { count: 0, files: new Set() }
    r.count++
    if (event.data.file !== undefined) r.files.add(sourceOf(event.data.file))
    byReason.set(reason, r)
  }
  for (const [reason, { count, files }] of byReason) {
    yield `run-tests: ${count} test${count === 1 ? '' : 's'} skipped — ${reason}: ${[...files].join(', ')}\n`
  }
}
