#!/usr/bin/env node
/**
 * Bundles each service (part of the root `npm run build`, after `tsc -b`): its compiled entry point
 * `dist/src/main.js` and everything it imports, workspace packages and npm packages alike, into
 * `dist/bundle/main.js` (an ES module, its source map beside it, chained to the TypeScript sources). That file
 * is the `main` of each entry of services/services.json, which `npm start`, the test kit's stack and the
 * image's entry point run.
 *
 * Why: on Node 20 (no module compile cache) finding, reading and compiling the ~600 module files a service
 * imports was most of its start (issue #9: each service ready within 300 ms); one file read once is not.
 * What stays as it was (scripts/lib/bundle.mjs): packages that cannot be bundled stay outside (the native
 * libvirt binding, …); the kvm driver, imported dynamically, is a chunk loaded as late as before;
 * `import.meta.url` in a workspace module still names its compiled file, so paths built from it resolve alike.
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
