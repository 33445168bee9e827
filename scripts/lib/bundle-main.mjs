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
let bytes = readFileSync(file) // until settle(): a new cache names the bundle's hash
const cache = readCache(file, bytes)
const code = bytes.toString('utf8')
const state = { get status () { return cache.status }, settle, mapHolder: undefined }
globalThis[Symbol.for('porthole.codeCache')] = state

// With --enable-source-maps, stack traces in the bundle name the TypeScript sources: node reads the source map
// of each file its module loaders compile, and a script compiled here is not one of them. So a module of that
// name whose only line names the map registers it; not now (reading the map is ~5-10 ms), but once a stack
// trace is first formatted, through Error.prepareStackTrace, node's own, which maps the frames. The module is
// kept in `state`: node keeps a map only while its module lives.
const formatStack = Error.prepareStackTrace
const registerMap = () => {
  if (state.mapHolder !== undefined) return
  state.mapHolder = new Module(file)
  state.mapHolder.filename = file
  state.mapHolder._compile('//# sourceMappingURL=bundle.js.map', file)
}
if (typeof formatStack === 'function') {
  Error.prepareStackTrace = function prepareStackTrace (error, trace) {
    registerMap()
    if (Error.prepareStackTrace === prepareStackTrace) Error.prepareStackTrace = formatStack
    return Reflect.apply(formatStack, this, [error, trace])
  }
} else {
  registerMap()
}
const script = new Script(code, { filename: file, cachedData: cache.data })
if (cache.data !== undefined && script.cachedDataRejected === true) Object.assign(cache, { status: 'rejected', madeBy: undefined })
cache.data = undefined // V8 is done with it (~0.3-2 MB)

let settled
/** Saves a new cache if this start needed one (once); returns how the start went, for a log line. */
function settle () {
  if (settled !== undefined) return settled
  const { status, madeBy, error } = cache
  settled = { codeCache: status, ...madeBy === undefined ? {} : { madeBy }, ...error === undefined ? {} : { error } }
  if (madeBy !== 'start') {
    try {
      writeCache(file, bytes, script, 'start')
      settled.saved = true
    } catch (err) {
      Object.assign(settled, { saved: false, saveError: err.message })
    }
  }
  bytes = undefined
  return settled
}
// `import.meta` and `import()` are this module's, as the bundle's were when it was main.js itself (the specifiers
// are the bundle's string literals: its `import()` calls of the packages it leaves out, bundle.mjs).
// eslint-disable-next-line porthole/static-imports
await script.runInThisContext()(import.meta, (spec) => import(spec), createRequire, dirname, fileURLToPath)
// An entry point that is not a service (the startup bench's bare fastify peer) has no ready line to save at.
settle()
