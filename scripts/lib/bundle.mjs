// How a service is bundled into one file (scripts/bundle-services.mjs, part of `npm run build`); the startup
// bench bundles its bare fastify peer with the same options, so that the two are compared like for like.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { builtinModules } from 'node:module'
import { dirname, join, relative, sep } from 'node:path'
import { Script } from 'node:vm'
import * as esbuild from 'esbuild'
import { writeCache } from './code-cache.mjs'

/** Packages left to node's own loader, with why. */
export const EXTERNAL = [
  '@unraid/libvirt', // native binding (an optional dependency), loaded by the kvm driver only
  'bufferutil', 'utf-8-validate', // ws's optional native add-ons (tried in a try/catch)
  'guacamole-lite', // required lazily, by file path, only when a guacamole session opens
  // Fastify's schema compilers: the API gives its own validator (no ajv) and loads the serializers' after it
  // listens (services/api/src/compilers.ts); kept out, the ~700 KB of them and ajv are not parsed at start.
  '@fastify/ajv-compiler', '@fastify/fast-json-stringify-compiler'
]

/**
 * Modules that a package loads at start but uses only by calling their functions, and rarely: there, a stand-in
 * that loads the module at the first call. [the importing package, the module, why]
 */
const LAZY = [
  ['fastify', 'node:http2', 'fastify calls http2.createServer only for an http2 server; loading node:http2 was ~40 ms of a start'],
  ['@fastify/static', 'glob', "@fastify/static calls glob() only with `wildcard: false`; glob's classes took ~30 ms to set up"],
  ['ioredis', './cluster', 'ioredis exports its Cluster class, which Porthole never uses: ~30 ms of every start']
]

const escapeRe = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/**
 * `require(module)` from the package → a stand-in whose every member is a function (or class) that loads the
 * module when first called (or constructed); reading a member's own properties is not supported.
 */
const lazyModules = {
  name: 'porthole-lazy-modules',
  setup (build) {
    for (const [pkg, mod] of LAZY) {
      const filter = new RegExp(`^${escapeRe(mod)}$`)
      build.onResolve({ filter }, (a) => a.importer.includes(`${sep}node_modules${sep}${pkg}${sep}`) && a.namespace === 'file'
        ? { path: mod, namespace: 'porthole-lazy', pluginData: { resolveDir: dirname(a.importer) } }
        : undefined)
    }
    build.onLoad({ filter: /.*/, namespace: 'porthole-lazy' }, (a) => ({
      loader: 'js',
      resolveDir: a.pluginData.resolveDir,
      contents: `let m; const load = () => (m ??= require(${JSON.stringify(a.path)}));
module.exports = new Proxy({}, { get: (_, k) => typeof k === 'symbol' || k === '__esModule' ? undefined : function (...args) { return new.target === undefined ? load()[k].apply(this, args) : Reflect.construct(load()[k], args, new.target) } })`
    }))
  }
}

/**
 * What ES modules import from outside the bundle with `import … from`, as late as they import it (the kvm
 * driver's `@unraid/libvirt` with the driver only), though the bundle is a script, which has no `import`
 * statement: node's own modules through a stand-in that requires them; a package of EXTERNAL through one
 * that imports it (`await import()`, an ES module may be nothing else) and exports the names its importers
 * use. `require()` of them stays a `require()`, `import()` an `import()`, made by the loader (see BANNER).
 */
const externals = (dynamicImports) => ({
  name: 'porthole-externals',
  setup (build) {
    const names = [...EXTERNAL, ...builtinModules].map(escapeRe).join('|')
    build.onResolve({ filter: new RegExp(`^(node:.*|(${names})(/.*)?)$`) }, async (a) => {
      if (a.kind === 'dynamic-import') dynamicImports.add(a.path)
      if (a.kind !== 'import-statement') return { path: a.path, external: true }
      if (a.path.startsWith('node:') || builtinModules.includes(a.path)) return { path: a.path, namespace: 'porthole-external', pluginData: { spec: a.path } }
      // One stand-in per importer, with the names that it imports.
      return { path: `${a.path} from ${relative(process.cwd(), a.importer).split(sep).join('/')}`, namespace: 'porthole-external', pluginData: { spec: a.path, names: importedNames(await readFile(a.importer, 'utf8'), a.path, a.importer) } }
    })
    build.onLoad({ filter: /.*/, namespace: 'porthole-external' }, ({ pluginData: { spec, names } }) => {
      if (names === undefined) return { loader: 'js', contents: `module.exports = require(${JSON.stringify(spec)})` }
      const named = names.filter(n => n !== 'default')
      return {
        loader: 'js',
        contents: `const m = await __impt(${JSON.stringify(spec)})\n` +
          (named.length > 0 ? `export const { ${named.join(', ')} } = m\n` : '') +
          (names.includes('default') ? 'export default m.default\n' : '')
      }
    })
  }
})

/** The names a module imports from `spec` (`import a, { b, c as d, type e } from 'spec'`). */
function importedNames (text, spec, importer) {
  const names = []
  for (const [, clause] of text.matchAll(new RegExp(`\\bimport\\s+([^;'"]*?)\\s*from\\s*['"]${escapeRe(spec)}['"]`, 'g'))) {
    const [, def, list] = /^(?:([\w$]+)\s*,?\s*)?(?:\{([^}]*)\})?$/.exec(clause.trim()) ?? []
    if (def === undefined && list === undefined) throw new Error(`${importer}: \`import ${clause} from '${spec}'\`: name what it imports (a bundle imports ${spec} through a stand-in)`)
    if (def === 'type') continue // `import type { … }`: nothing at run time
    if (def !== undefined) names.push('default')
    for (const item of (list ?? '').split(',').map(i => i.trim()).filter(i => i !== '' && !i.startsWith('type '))) names.push(item.split(/\s+as\s+/)[0])
  }
  return names
}

// The bundle is the body of an async function (a script, so that V8 can cache its compiled code: see
// bundle-main.mjs, which runs it): `await` at its top level works as in the module it was; `import.meta` is the
// loader's, dist/bundle/main.js's, the same file and URL as when the bundle itself was main.js; and so is
// `import()`, `__impt` (V8 loses a script's `import()` callback when its code comes from the cache,
// and node 20's vm needs an experimental option, with a warning, for one; the name is as long as `import`, so
// that putting it in place of `import` leaves the source map's columns true). The CommonJS packages in the bundle
// (fastify, ioredis, amqplib, pino, …) require node's own modules through this `require`.
// `__portholeFile(rel)`: a file named relative to the bundle.
const BANNER = [
  '(async function (__portholeMeta, __impt, __portholeCreateRequire, __portholeDirname, __portholeFileURLToPath) {\'use strict\'',
  'const require = __portholeCreateRequire(__portholeMeta.url)',
  'const __portholeFile = (rel) => __portholeFileURLToPath(new URL(rel, __portholeMeta.url))'
].join(';') + ';'
const FOOTER = '})'

/**
 * Each module keeps its own place: `import.meta.url` in an ES module, `__dirname` and `__filename` in a
 * CommonJS one, name the module's own file (where tsc or npm put it), relative to the bundle; so paths built
 * from them (the gateway's static files, swagger-ui's, the ops page's) and `createRequire` calls resolve as
 * they did unbundled.
 */
const ownPlace = (outdir) => ({
  name: 'porthole-own-place',
  setup (build) {
    build.onLoad({ filter: /\.[cm]?js$/ }, async (a) => {
      const text = await readFile(a.path, 'utf8')
      const url = text.includes('import.meta.url')
      const dir = /\b__(dirname|filename)\b/.test(text)
      if (!url && !dir) return undefined
      const rel = JSON.stringify(relative(outdir, a.path).split(sep).join('/'))
      let contents = url ? text.replaceAll('import.meta.url', `new URL(${rel}, import.meta.url).href`) : text
      if (dir) {
        // After a hashbang and a "use strict" directive, which must stay first.
        const head = /^(#![^\n]*\n)?(\s*(['"])use strict\3;?)?/.exec(contents)?.[0] ?? ''
        contents = `${head}\nvar __filename = __portholeFile(${rel}), __dirname = __portholeDirname(__filename);${contents.slice(head.length)}`
      }
      return { contents, loader: 'js', resolveDir: dirname(a.path) }
    })
  }
})

/**
 * Bundles `entry` (a file, or `{ contents, resolveDir }`) into `outdir/bundle.js`, the body of an async function
 * (BANNER), with a linked source map chained to the sources' own maps and V8's code cache of its top level;
 * beside it `outdir/main.js`, the loader that runs it with the cache (bundle-main.mjs, code-cache.mjs). A
 * dynamic `import()` of a module stays as late as it was: esbuild evaluates the module (kept in the one file)
 * when the import is called. Any other file in `outdir` is removed.
 * @returns {Promise<number>} bytes of code written
 */
export async function bundle (entry, outdir) {
  const dynamicImports = new Set()
  const r = await esbuild.build({
    ...(typeof entry === 'string' ? { entryPoints: { bundle: entry } } : { stdin: { ...entry, sourcefile: 'main.js' }, entryNames: 'bundle' }),
    outdir,
    write: false,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    sourcesContent: false,
    // Fewer bytes for node to read, compile and measure for its source maps at start; names are kept.
    minifyWhitespace: true,
    minifySyntax: true,
    define: { 'import.meta': '__portholeMeta' },
    banner: { js: BANNER },
    footer: { js: FOOTER },
    metafile: true,
    logLevel: 'warning',
    plugins: [lazyModules, externals(dynamicImports), ownPlace(outdir)]
  })
  const file = join(outdir, 'bundle.js')
  const out = (name) => r.outputFiles.find(f => f.path === join(outdir, name))
  let code = out('bundle.js').text
  for (const spec of dynamicImports) code = code.replaceAll(new RegExp(`(?<![.\\w$])import(\\((["'\`])${escapeRe(spec)}\\2\\))`, 'g'), '__impt$1')
  // A module syntax that the function cannot hold (an `import` or `export` statement), or an `import()` left
  // as it was, fails the build, not a start.
  const left = /.{0,60}\bimport\s*\(.{0,60}/.exec(code)
  if (left !== null) throw new Error(`${file}: an import() that the bundle cannot make: ${left[0]}`)
  const script = new Script(code, { filename: file })
  // A service may be started while the build runs (`npm start` restarts one that exits): each file is replaced
  // whole, the loader last, and a start that meets the old cache with the new bundle compiles without it.
  await mkdir(outdir, { recursive: true })
  const put = async (name, data) => {
    await writeFile(join(outdir, `${name}.${process.pid}.tmp`), data)
    await rename(join(outdir, `${name}.${process.pid}.tmp`), join(outdir, name))
  }
  await put('bundle.js.map', out('bundle.js.map').contents)
  await put('bundle.js', code)
  writeCache(file, Buffer.from(code), script, 'build')
  await put('code-cache.mjs', await readFile(new URL('code-cache.mjs', import.meta.url)))
  await put('main.js', await readFile(new URL('bundle-main.mjs', import.meta.url)))
  // What an earlier build left that this one did not write (the chunks and maps of the ES-module bundle).
  const kept = new Set(['bundle.js', 'bundle.js.map', 'bundle.js.cache', 'code-cache.mjs', 'main.js'])
  for (const f of await readdir(outdir)) if (!kept.has(f)) await rm(join(outdir, f), { recursive: true, force: true })
  return Object.entries(r.metafile.outputs).filter(([f]) => f.endsWith('.js')).reduce((n, [, o]) => n + o.bytes, 0)
}
