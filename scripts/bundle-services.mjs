#!/usr/bin/env node
/**
 * Bundles each service (part of the root `npm run build`, after `tsc -b`): its compiled entry point
 * `dist/src/main.js` and everything it imports, workspace packages and npm packages alike, into
 * `dist/bundle/`: `bundle.js`, one script (the body of an async function), its source map beside it, chained to
 * the TypeScript sources, and V8's code cache of it; `main.js`, the loader that runs it with the cache
 * (scripts/lib/bundle-main.mjs), is the `main` of each entry of services/services.json, which `npm start`, the
 * test kit's stack and the image's entry point run.
 *
 * Why: on Node 20 (no module compile cache) finding, reading and compiling the ~600 module files a service
 * imports was most of its start (issue #9: each service ready within 300 ms); one file read once is not, and
 * with the code cache not even that one is compiled again. The build's cache holds the bundle's top level; the
 * first start that can write beside the bundle replaces it with one holding what the start compiled. A cache
 * made for another node, bundle or V8 flags, or damaged, is not used (that start compiles as before and saves
 * a new one): the service's debug log line "code cache" says how its start went.
 * What stays as it was (scripts/lib/bundle.mjs): packages that cannot be bundled stay outside (the native
 * libvirt binding, …), imported as late as before (the kvm driver's, with the driver); `import.meta.url` in a
 * workspace module still names its compiled file, so paths built from it resolve alike; `import.meta` and
 * `import()` elsewhere are the loader's, the file that was the bundle before.
 */
import { readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { bundle } from './lib/bundle.mjs'
import { ROOT } from './lib/local-env.mjs'
import { SERVICES } from './lib/services.mjs'

// `--one SOURCE RESOLVE_DIR OUTDIR`: bundles one script as the services are (the startup bench's bare fastify
// peer), its imports resolved from RESOLVE_DIR, into OUTDIR/main.js.
const one = process.argv.indexOf('--one')
if (one !== -1) {
  const [source, resolveDir, outdir] = process.argv.slice(one + 1)
  await bundle({ contents: readFileSync(source, 'utf8'), resolveDir }, outdir)
  process.exit(0)
}

for (const s of SERVICES) {
  const dir = join(ROOT, s.dir)
  if (s.main !== 'dist/bundle/main.js') throw new Error(`${s.name}: its main in services/services.json should be the bundle, dist/bundle/main.js; is ${s.main}`)
  const bytes = await bundle(join(dir, 'dist', 'src', 'main.js'), dirname(join(dir, s.main)))
  console.log(`${s.name} bundled: ${relative(ROOT, join(dir, s.main))} (${(bytes / 1024).toFixed(0)} KiB of code)`)
}
