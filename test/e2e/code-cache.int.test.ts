// A bundle runs with V8's code cache (scripts/lib/bundle-main.mjs, code-cache.mjs) when it has one made for it,
// and as without one when the cache is missing, stale, corrupt or refused by V8: it starts all the same, says
// so (a service at debug) and saves one it can use next time. Stack traces name the sources in every case.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Script } from 'node:vm'
import { REPO_ROOT, startStack, waitFor } from '@porthole/testkit'

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex')

/** The cache file's first line, and its data. */
function readCacheFile (file: string): { head: string[], data: Buffer } {
  const buf = readFileSync(file)
  const eol = buf.indexOf(10)
  return { head: buf.subarray(0, eol).toString('latin1').split(' '), data: buf.subarray(eol + 1) }
}

/** Ways to spoil the cache of the bundle in `dir`, each with the status the next start reports. */
const SPOILERS: Array<[string, (dir: string) => void]> = [
  ['missing', (dir) => rmSync(join(dir, 'bundle.js.cache'))],
  ['stale', (dir) => { // made by another node
    const file = join(dir, 'bundle.js.cache')
    writeFileSync(file, readFileSync(file, 'latin1').replace(/^v[\d.]+ /, 'v20.0.0 '), 'latin1')
  }],
  ['corrupt', (dir) => { // a byte of the data changed
    const file = join(dir, 'bundle.js.cache')
    const buf = readFileSync(file)
    const at = buf.length - 100
    buf[at] = (buf[at] ?? 0) ^ 0xff
    writeFileSync(file, buf)
  }],
  ['rejected', (dir) => { // intact and made for this bundle by its first line, but V8's data is another script's
    const code = readFileSync(join(dir, 'bundle.js'), 'utf8')
    const data = new Script('"another script"').createCachedData()
    writeFileSync(join(dir, 'bundle.js.cache'), Buffer.concat([Buffer.from(`${process.version} ${process.arch} ${sha256(code)} ${sha256(data)} start\n`), data]))
  }]
]

test('a bundle runs with its code cache, and as without one when the cache is missing, stale, corrupt or refused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'porthole-code-cache-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  // The `import()` before it on its line is rewritten in the bundle (bundle.mjs): the column must still be true.
  const first = "const { sep } = await import('node:path'); function where () { return sep && new Error('here').stack }"
  writeFileSync(join(dir, 'entry.mjs'), [
    first,
    'const early = where()',
    // Node keeps a source map only while its module lives: the stack of an error made after a collection too.
    'for (let i = 0; i < 2 && globalThis.gc !== undefined; i++) { globalThis.gc(); await new Promise((resolve) => setImmediate(resolve)) }',
    "console.log(JSON.stringify({ stacks: [early, where()], status: globalThis[Symbol.for('porthole.codeCache')].status, url: import.meta.url }))"
  ].join('\n'))
  const built = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'bundle-services.mjs'), '--one', join(dir, 'entry.mjs'), dir, join(dir, 'out')], { encoding: 'utf8' })
  assert.equal(built.status, 0, built.stderr)
  const out = join(dir, 'out')
  const run = (...flags: string[]): { status: string } => {
    const r = spawnSync(process.execPath, ['--enable-source-maps', ...flags, join(out, 'main.js')], { encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    assert.equal(r.stderr, '', 'nothing on stderr (no warning)')
    const line = JSON.parse(r.stdout) as { stacks: string[], status: string, url: string }
    for (const stack of line.stacks) {
      assert.ok(stack.includes(`at where (${join(dir, 'main.js')}:1:${first.indexOf('new Error') + 1})`), `the stack names the source, line and column:\n${stack}`)
      assert.doesNotMatch(stack, /bundle\.js/)
    }
    assert.equal(line.url, `file://${out}/main.js`, 'import.meta.url names the entry point, as when the bundle was main.js')
    return line
  }

  assert.equal(readCacheFile(join(out, 'bundle.js.cache')).head[4], 'build', 'the build leaves a cache of the top level')
  assert.equal(run().status, 'used')
  assert.equal(readCacheFile(join(out, 'bundle.js.cache')).head[4], 'start', 'the first start replaces it with its own')
  const made = readFileSync(join(out, 'bundle.js.cache'))
  assert.equal(run().status, 'used')
  assert.deepEqual(readFileSync(join(out, 'bundle.js.cache')), made, 'a start that used a cache made by a start leaves it')

  for (const [status, spoil] of SPOILERS) {
    spoil(out)
    assert.equal(run().status, status, status)
    assert.equal(run().status, 'used', `after a start with a ${status} cache, the next one has a cache it can use`)
  }
  // One it cannot read (nor replace): the bundle runs all the same.
  rmSync(join(out, 'bundle.js.cache'))
  mkdirSync(join(out, 'bundle.js.cache'))
  assert.equal(run().status, 'unreadable')
  rmSync(join(out, 'bundle.js.cache'), { recursive: true })
  // V8 refuses a cache made under other V8 flags; this start collects garbage between its two stack traces.
  assert.equal(run('--expose-gc').status, 'missing')
  assert.equal(run().status, 'rejected')
  assert.equal(run().status, 'used')
  assert.deepEqual(readdirSync(out).filter(f => f.endsWith('.tmp')), [], 'no temporary file left')
})

test('a service says at debug how the code cache served its start, and starts whatever the cache', async (t) => {
  // A copy of the receiver's bundle, at the same depth (its paths are relative), so that the shared one is untouched.
  const copy = `bundle-code-cache-test-${randomBytes(4).toString('hex')}`
  const dir = join(REPO_ROOT, 'services', 'receiver', 'dist', copy)
  cpSync(join(REPO_ROOT, 'services', 'receiver', 'dist', 'bundle'), dir, { recursive: true })
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const stack = await startStack(t, { services: [], envFor: { receiver: { LOG_LEVEL: 'debug' } }, mainFor: { receiver: `dist/${copy}/main.js` } })

  /** Starts the receiver and returns its "code cache" line, which follows "ready". */
  const start = async (): Promise<Record<string, unknown>> => {
    await stack.start('receiver')
    const pid = stack.pids.get('receiver')
    const line = await waitFor(() => stack.logLines.find(l => l.includes(`"pid":${pid},`) && l.includes('"msg":"code cache"')), 10_000, 'the receiver\'s "code cache" line')
    await stack.stop('receiver')
    return JSON.parse(line) as Record<string, unknown>
  }

  // Whatever the copied cache was (the build's, or a start's since), the first start saves its own.
  const first = await start()
  assert.equal(first.level, 20, 'at debug')
  assert.equal(first.codeCache, 'used')
  const second = await start()
  assert.equal(second.codeCache, 'used')
  assert.equal(second.madeBy, 'start')
  assert.equal(second.saved, undefined, 'a cache made by a start is kept')
  for (const [status, spoil] of SPOILERS) {
    spoil(dir)
    const line = await start()
    assert.equal(line.codeCache, status)
    assert.equal(line.saved, true)
  }
  assert.ok(existsSync(join(dir, 'bundle.js.cache')))
})
