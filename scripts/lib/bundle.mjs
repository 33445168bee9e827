// How a service is bundled into one file (scripts/bundle-services.mjs, part of `npm run build`); the startup
// bench bundles its bare fastify peer with the same options, so that the two are compared like for like.
import { readFile } from 'node:fs/promises'
import { dirname, relative, sep } from 'node:path'
import * as esbuild from 'esbuild'

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

/**
 * `require(module)` from the package → a stand-in whose every member is a function (or class) that loads the
 * module when first called (or constructed); reading a member's own properties is not supported.
 */
const lazyModules = {
  name: 'porthole-lazy-modules',
  setup (build) {
    for (const [pkg, mod] of LAZY) {
      const filter = new RegExp(`^${mod.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)
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

// ES modules have no `require`; the CommonJS packages in the bundle (fastify, ioredis, amqplib, pino, …)
// require node's own modules through this one. `__portholeFile(rel)`: a file named relative to the bundle.
const BANNER = [
  "import { createRequire as __portholeCreateRequire } from 'node:module'",
  "import { dirname as __portholeDirname } from 'node:path'",
  "import { fileURLToPath as __portholeFileURLToPath } from 'node:url'",
  'const require = __portholeCreateRequire(import.meta.url)',
  'const __portholeFile = (rel) => __portholeFileURLToPath(new URL(rel, import.meta.url))'
].join(';') + ';'

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
 * Bundles `entry` (a file, or `{ contents, resolveDir }`) into `outdir/main.js`, ES module, with a linked
 * source map chained to the sources' own maps; a dynamic `import()` of a module becomes a chunk of its own.
 * @returns {Promise<number>} bytes of code written
 */
export async function bundle (entry, outdir) {
  const r = await esbuild.build({
    ...(typeof entry === 'string' ? { entryPoints: { main: entry } } : { stdin: { ...entry, sourcefile: 'main.js' }, entryNames: 'main' }),
    outdir,
    bundle: true,
    splitting: typeof entry === 'string',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    sourcesContent: false,
    // Fewer bytes for node to read, compile and measure for its source maps at start; names are kept.
    minifyWhitespace: true,
    minifySyntax: true,
    external: EXTERNAL,
    banner: { js: BANNER },
    metafile: true,
    logLevel: 'warning',
    plugins: [lazyModules, ownPlace(outdir)]
  })
  return Object.entries(r.metafile.outputs).filter(([f]) => f.endsWith('.js')).reduce((n, [, o]) => n + o.bytes, 0)
}
