// Porthole's own lint rules: the direction of imports between the layers, exports-only imports of packages,
// and no import through a variable. Loaded by eslint.config.js; test/e2e/layers.test.ts proves each catches
// its violation.
//
//   layer (by path)                 may import of Porthole's
//   packages/contracts/src          nothing (and no Node built-in: a browser page and a CLI import it)
//   services/*/public (browser)     @porthole/contracts (and no Node built-in)
//   packages/shared/src             @porthole/contracts
//   services/*/src                  @porthole/contracts, @porthole/shared
//   packages/testkit/src            @porthole/contracts, @porthole/shared
//   everything else (tests, bench,  @porthole/contracts, @porthole/shared, @porthole/testkit
//   scripts)
// Nothing imports a service (or bench, or the e2e tests); another workspace is imported by its package name,
// never by a relative path.
import { existsSync, readFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const readJson = (p) => JSON.parse(readFileSync(p, 'utf8'))

/** Porthole's workspaces: package name → { dir (relative to the root), kind }. */
const WORKSPACES = new Map()
for (const dir of readJson(join(ROOT, 'package.json')).workspaces) {
  const { name } = readJson(join(ROOT, dir, 'package.json'))
  const kind = dir === 'packages/contracts' ? 'contracts' : dir === 'packages/shared' ? 'shared' : dir === 'packages/testkit' ? 'testkit' : dir.startsWith('services/') ? 'service' : 'tooling'
  WORKSPACES.set(name, { dir, kind })
}
const ALLOWED = {
  contracts: [],
  browser: ['contracts'],
  shared: ['contracts'],
  service: ['contracts', 'shared'],
  testkit: ['contracts', 'shared'],
  tooling: ['contracts', 'shared', 'testkit']
}
const WHY = {
  contracts: 'the contract layer imports nothing of Porthole\'s',
  browser: 'browser code may import only @porthole/contracts',
  shared: 'the runtime layer (@porthole/shared) may import only @porthole/contracts',
  service: 'a service may import only @porthole/contracts and @porthole/shared (the test kit is for its tests)',
  testkit: 'the test kit may import only @porthole/contracts and @porthole/shared',
  tooling: 'tests, benchmarks and scripts may import @porthole/contracts, @porthole/shared and @porthole/testkit'
}

const posix = (p) => p.split(sep).join('/')
function layerOf (file) {
  const rel = posix(relative(ROOT, file))
  if (rel.startsWith('packages/contracts/src/')) return 'contracts'
  if (rel.startsWith('packages/shared/src/')) return 'shared'
  if (rel.startsWith('packages/testkit/src/')) return 'testkit'
  if (/^services\/[^/]+\/src\//.test(rel)) return 'service'
  if (/^services\/[^/]+\/public\//.test(rel)) return 'browser'
  return 'tooling'
}
/** The workspace directory (relative to the root) holding a path, or '' for the root's own files. */
function workspaceOf (path) {
  const rel = posix(relative(ROOT, path))
  for (const { dir } of WORKSPACES.values()) if (rel === dir || rel.startsWith(`${dir}/`)) return dir
  return ''
}
const isBuiltin = (s) => s.startsWith('node:') || builtinModules.includes(s.split('/')[0])
const isRelative = (s) => s.startsWith('./') || s.startsWith('../') || s.startsWith('/')
function splitBare (s) {
  const parts = s.split('/')
  const n = s.startsWith('@') ? 2 : 1
  return { name: parts.slice(0, n).join('/'), sub: parts.slice(n).join('/') }
}

/** Every module specifier a file names: import/export declarations, import(), require(), `import('x')` types. */
function onSpecifiers (context, fn) {
  const str = (node) => node?.type === 'Literal' && typeof node.value === 'string' ? node.value : undefined
  return {
    ImportDeclaration: (n) => fn(n.source.value, n.source),
    ExportNamedDeclaration: (n) => { if (n.source) fn(n.source.value, n.source) },
    ExportAllDeclaration: (n) => fn(n.source.value, n.source),
    ImportExpression: (n) => {
      const s = str(n.source) ?? (n.source.type === 'TemplateLiteral' && n.source.expressions.length === 0 ? n.source.quasis[0].value.cooked : undefined)
      if (s !== undefined) fn(s, n.source)
    },
    CallExpression: (n) => { if (n.callee.type === 'Identifier' && n.callee.name === 'require' && str(n.arguments[0]) !== undefined) fn(n.arguments[0].value, n.arguments[0]) },
    TSImportType: (n) => { const s = str(n.argument?.literal ?? n.argument); if (s !== undefined) fn(s, n) }
  }
}

const layers = {
  meta: { type: 'problem', docs: { description: 'imports follow the layers: services → @porthole/shared → @porthole/contracts; nothing imports a service' }, schema: [] },
  create (context) {
    const file = context.filename
    const layer = layerOf(file)
    const own = workspaceOf(file)
    return onSpecifiers(context, (spec, node) => {
      if (isBuiltin(spec)) {
        if (layer === 'contracts' || layer === 'browser') context.report({ node, message: `'${spec}': ${layer === 'contracts' ? 'the contract layer' : 'browser code'} uses no Node built-in (a browser page and a CLI import it)` })
        return
      }
      if (isRelative(spec)) {
        const target = workspaceOf(resolve(dirname(file), spec))
        if (target !== own) {
          const ws = [...WORKSPACES].find(([, w]) => w.dir === target)
          context.report({ node, message: ws === undefined ? `'${spec}' reaches outside its workspace` : ws[1].kind === 'service' || ws[1].kind === 'tooling' ? `'${spec}': nothing imports a service (${ws[0]}) or its files` : `'${spec}': import ${ws[0]} by its package name and its exports, not by a path` })
        }
        return
      }
      const { name } = splitBare(spec)
      const ws = WORKSPACES.get(name)
      if (ws === undefined || ws.dir === own) return
      if (ws.kind === 'service' || ws.kind === 'tooling') context.report({ node, message: `'${spec}': nothing imports a service (${name})` })
      else if (!ALLOWED[layer].includes(ws.kind)) context.report({ node, message: `'${spec}': ${WHY[layer]}` })
    })
  }
}

/** Whether a package.json's `exports` offers `./sub`. */
function exported (exportsField, sub) {
  if (exportsField === undefined) return false
  const keys = typeof exportsField === 'object' && exportsField !== null && !Array.isArray(exportsField) ? Object.keys(exportsField) : []
  if (!keys.some(k => k.startsWith('.'))) return false // a string or conditions only: just "."
  const want = `./${sub}`
  return keys.some(k => {
    if (exportsField[k] === null) return false
    if (k === want) return true
    const star = k.indexOf('*')
    return star >= 0 && want.startsWith(k.slice(0, star)) && want.endsWith(k.slice(star + 1)) && want.length >= k.length - 1
  })
}
function packageJson (fromDir, name) {
  for (let d = fromDir; ; d = dirname(d)) {
    const p = join(d, 'node_modules', name, 'package.json')
    if (existsSync(p)) return readJson(p)
    if (dirname(d) === d) return undefined
  }
}

const exportsOnly = {
  meta: {
    type: 'problem',
    docs: { description: 'a package is imported at its root or an `exports` subpath, never into its files' },
    schema: [{ type: 'object', properties: { allow: { type: 'object', additionalProperties: { type: 'array', items: { type: 'string' } } } }, additionalProperties: false }]
  },
  create (context) {
    const allow = context.options[0]?.allow ?? {}
    const file = context.filename
    const rel = posix(relative(ROOT, file))
    return onSpecifiers(context, (spec, node) => {
      if (isBuiltin(spec) || isRelative(spec)) return
      const { name, sub } = splitBare(spec)
      if (sub === '') return
      if ((allow[spec] ?? []).includes(rel)) return
      const pkg = packageJson(dirname(file), name)
      if (pkg === undefined) return // unresolvable: the compiler says so
      if (exported(pkg.exports, sub)) return
      context.report({ node, message: `'${spec}' reaches into ${name}'s files: import ${name} or one of its \`exports\` subpaths` })
    })
  }
}

/** `import(x)` / `require(x)` with a computed name: the reader, the compiler and these rules cannot see what is loaded. */
const staticImports = {
  meta: { type: 'problem', docs: { description: 'no import through a variable' }, schema: [] },
  create (context) {
    const literal = (n) => (n.type === 'Literal' && typeof n.value === 'string') || (n.type === 'TemplateLiteral' && n.expressions.length === 0)
    // `import(new URL('./file.js', import.meta.url).href)`: a literal path, resolved against the file itself.
    const fileRelative = (n) => n.type === 'MemberExpression' && n.property.type === 'Identifier' && n.property.name === 'href' &&
      n.object.type === 'NewExpression' && n.object.callee.type === 'Identifier' && n.object.callee.name === 'URL' &&
      n.object.arguments.length === 2 && literal(n.object.arguments[0]) &&
      n.object.arguments[1].type === 'MemberExpression' && n.object.arguments[1].object.type === 'MetaProperty' && n.object.arguments[1].property.name === 'url'
    const report = (node) => context.report({ node, message: 'import through a variable: name the module with a string literal (a static import where you can)' })
    return {
      ImportExpression: (n) => { if (!literal(n.source) && !fileRelative(n.source)) report(n) },
      CallExpression: (n) => { if (n.callee.type === 'Identifier' && n.callee.name === 'require' && n.arguments.length > 0 && !literal(n.arguments[0])) report(n) }
    }
  }
}

export default { meta: { name: 'porthole' }, rules: { layers, 'exports-only': exportsOnly, 'static-imports': staticImports } }
