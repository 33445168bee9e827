#!/usr/bin/env node
/**
 * Builds the console page for delivery (`npm run bundle -w @porthole/console-gateway`; part of the root
 * `npm run build`). Into dist/public/:
 * - `app-<hash>.js`: the page's script (public/boot.js, public/app.js) and noVNC as one minified ES module;
 * - `guacamole-common-<hash>.js`: guacamole-common-js, one minified module loaded only by guacamole sessions;
 * - `serial-<hash>.js`: public/serial.js with xterm.js and its fit add-on, loaded only by serial sessions;
 * - `app-<hash>.css`: the styles (with xterm.js's), minified;
 * - `console.html`: public/console.html naming those files, with preload hints;
 * - a `.br` and a `.gz` beside each asset (the gateway serves them to browsers that accept them);
 * - `manifest.json`: the asset names, which the gateway serves as immutable.
 * Names carry a hash of their content, so a browser may keep them for a year; the page itself is no-store.
 * The relative imports of the page's script and styles (`./novnc/...`, `./guacamole/...`, `./xterm/...`) are
 * resolved here to the installed packages, the same files the gateway serves to the unbundled page.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { brotliCompress, constants, gzip } from 'node:zlib'
import * as esbuild from 'esbuild'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const pub = join(root, 'public')
const out = join(root, 'dist', 'public')
const novncDir = resolve(dirname(fileURLToPath(import.meta.resolve('@novnc/novnc'))), '..') // …/core/rfb.js → the package
const guacFile = fileURLToPath(import.meta.resolve('guacamole-common-js'))
/** `./shared/console-close.js` → the close codes' one definition, compiled (@porthole/contracts). */
const closeCodesFile = join(dirname(fileURLToPath(import.meta.resolve('@porthole/contracts'))), 'console-close.js')
/** `./xterm/<file>` → the installed xterm.js (`xterm.mjs`, `xterm.css`) or its fit add-on (`addon-fit.mjs`). */
const xtermFiles = {
  'xterm.mjs': fileURLToPath(new URL('./lib/xterm.mjs', import.meta.resolve('@xterm/xterm/package.json'))),
  'xterm.css': fileURLToPath(new URL('./css/xterm.css', import.meta.resolve('@xterm/xterm/package.json'))),
  'addon-fit.mjs': fileURLToPath(new URL('./lib/addon-fit.mjs', import.meta.resolve('@xterm/addon-fit/package.json')))
}

/** `./novnc/<path>` → the installed noVNC; `./guacamole/guacamole-common.js` → guacamole-common-js; `./xterm/…`. */
const packages = {
  name: 'porthole-packages',
  setup (build) {
    build.onResolve({ filter: /^\.\/novnc\// }, a => ({ path: join(novncDir, a.path.slice('./novnc/'.length)) }))
    build.onResolve({ filter: /^\.\/guacamole\/guacamole-common\.js$/ }, () => ({ path: guacFile }))
    build.onResolve({ filter: /^\.\/shared\/console-close\.js$/ }, () => ({ path: closeCodesFile }))
    build.onResolve({ filter: /^\.\/xterm\// }, (a) => {
      const file = xtermFiles[a.path.slice('./xterm/'.length)]
      return file === undefined ? { errors: [{ text: `no such xterm.js file: ${a.path}` }] } : { path: file }
    })
  }
}

await rm(out, { recursive: true, force: true })
await mkdir(out, { recursive: true })
const result = await esbuild.build({
  entryPoints: [join(pub, 'app.js'), join(pub, 'app.css')],
  outdir: out,
  bundle: true,
  splitting: true,
  format: 'esm',
  target: ['chrome100', 'firefox100', 'safari15.4'],
  minify: true,
  legalComments: 'linked',
  entryNames: '[name]-[hash]',
  chunkNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
  plugins: [packages]
})

const files = Object.keys(result.metafile.outputs).map(f => basename(f))
const entry = (ext) => {
  const o = Object.entries(result.metafile.outputs).find(([, v]) => v.entryPoint !== undefined && v.entryPoint.endsWith(`app.${ext}`))
  if (o === undefined) throw new Error(`no output for app.${ext}`)
  return basename(o[0])
}
const js = entry('js')
const css = entry('css')

// The page: the same document, naming the built files. The module script is in the head (deferred by
// type=module, fetched at once by the preload scanner); modulepreload lets the browser fetch and compile
// it at high priority while the stylesheet arrives.
let html = await readFile(join(pub, 'console.html'), 'utf8')
const replace = (from, to) => {
  if (!html.includes(from)) throw new Error(`console.html does not reference ${from}`)
  html = html.replace(from, to)
}
replace('href="assets/app.css"', `href="assets/${css}"`)
replace('<script type="module" src="assets/app.js"></script>', `<link rel="modulepreload" href="assets/${js}">\n<script type="module" src="assets/${js}" fetchpriority="high"></script>`)
await writeFile(join(out, 'console.html'), html)

const br = promisify(brotliCompress)
const gz = promisify(gzip)
for (const f of files) {
  if (!/\.(js|css)$/.test(f)) continue
  const body = await readFile(join(out, f))
  await writeFile(join(out, f + '.br'), await br(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: body.length } }))
  await writeFile(join(out, f + '.gz'), await gz(body, { level: 9 }))
}
await writeFile(join(out, 'manifest.json'), JSON.stringify({ page: 'console.html', script: js, style: css, assets: files }, null, 2) + '\n')
const size = (f) => `${f} ${(result.metafile.outputs[Object.keys(result.metafile.outputs).find(k => k.endsWith(f))].bytes / 1024).toFixed(0)} KiB`
console.log(`console page bundled: ${files.filter(f => /\.(js|css)$/.test(f)).map(size).join(', ')}`)
