// A bundled service's entry point, copied beside its bundle as dist/bundle/main.js (scripts/lib/bundle.mjs):
// runs bundle.js, the service's code as one script, with V8's code cache (code-cache.mjs), so that a start
// does not compile again what was compiled before (Node 20 has no module compile cache; compiling the bundle
// was 70–140 ms of each start).
//
// The build leaves a cache of the bundle's top level; the first start that can write beside the bundle
// replaces it, once the service is ready, with one that also holds the functions the start compiled; so does
// a start that found none or one it could not use (and then compiled as without one). How it went is in the
// service's debug log line "code cache" (packages/shared/src/service), and in
// `globalThis[Symbol.for('porthole.codeCache')]`.
import Module, { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Script } from 'node:vm'
import { readCache, writeCache } from './code-cache.mjs'

const file = fileURLToPath(new URL('bundle.js', import.meta.url))
const code = readFileSync(file, 'utf8')
const cache = readCache(file, code)
// With --enable-source-maps, stack traces in the bundle name the TypeScript sources: node reads a source map
// for the files its CommonJS loader compiles, and a script compiled here is not one of them. So a module of
// that name whose only line names the map registers it (kept for the life of the process below: node keeps
// the map only while its module lives).
const mapHolder = new Module(file)
mapHolder.filename = file
mapHolder._compile('//# sourceMappingURL=bundle.js.map', file)
const script = new Script(code, { filename: file, cachedData: cache.data })
if (cache.data !== undefined && script.cachedDataRejected === true) Object.assign(cache, { status: 'rejected', madeBy: undefined })

let settled
/** Saves a new cache if this start needed one (once); returns how the start went, for a log line. */
function settle () {
  if (settled !== undefined) return settled
  const { status, madeBy, error } = cache
  settled = { codeCache: status, ...madeBy === undefined ? {} : { madeBy }, ...error === undefined ? {} : { error } }
  if (madeBy === 'start') return settled
  try {
    writeCache(file, code, script, 'start')
    settled.saved = true
  } catch (err) {
    Object.assign(settled, { saved: false, saveError: err.message })
  }
  return settled
}
globalThis[Symbol.for('porthole.codeCache')] = { get status () { return cache.status }, settle, mapHolder }

// `import.meta` and `import()` are this module's, as the bundle's were when it was main.js itself (the specifiers
// are the bundle's string literals: its `import()` calls of the packages it leaves out, bundle.mjs).
// eslint-disable-next-line porthole/static-imports
await script.runInThisContext()(import.meta, (spec) => import(spec), createRequire, dirname, fileURLToPath)
// An entry point that is not a service (the startup bench's bare fastify peer) has no ready line to save at.
settle()
