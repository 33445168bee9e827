// The lint rules that keep the layers apart (scripts/lint/porthole-rules.mjs, configured in eslint.config.js)
// catch what they exist for: each case below is linted as if it were the named file of the repository, with
// the repository's own configuration, and must (or must not) be reported by the named rule.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { ESLint } from 'eslint'
import { REPO_ROOT } from '@porthole/testkit'

const eslint = new ESLint({ cwd: REPO_ROOT })

/** The Porthole rules that report `code` as the file `file` (a path relative to the repository's root). */
async function porthole (file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(REPO_ROOT, file) })
  assert.ok(result !== undefined)
  const fatal = result.messages.filter(m => m.fatal === true)
  assert.deepEqual(fatal, [], `the case does not parse: ${fatal.map(m => m.message).join('; ')}`)
  return result.messages.filter(m => m.ruleId?.startsWith('porthole/') === true).map(m => `${m.ruleId}: ${m.message}`)
}

const caught: Array<[string, string, string, string]> = [
  // [what, file, code, rule]
  ['a Node built-in in the contract layer', 'packages/contracts/src/x.ts', "import { readFile } from 'node:fs/promises'\nexport const r = readFile", 'porthole/layers'],
  ['a Node global in the contract layer', 'packages/contracts/src/x.ts', 'export const env = process.env', 'no-restricted-globals'],
  ['the runtime layer from the contract layer', 'packages/contracts/src/x.ts', "export { createLogger } from '@porthole/shared/logging'", 'porthole/layers'],
  ['the test kit from the runtime layer', 'packages/shared/src/x.ts', "export { waitFor } from '@porthole/testkit'", 'porthole/layers'],
  ['the test kit from a service', 'services/api/src/x.ts', "export { startStack } from '@porthole/testkit'", 'porthole/layers'],
  ['a service from a service, by name', 'services/api/src/x.ts', "export * from '@porthole/agents'", 'porthole/layers'],
  ['a service from a service, by path', 'services/api/src/x.ts', "export * from '../../agents/src/driver.js'", 'porthole/layers'],
  ['a service\'s compiled tests from the bench', 'bench/src/x.ts', "export const sim = await import('../../services/agents/dist/test/ipmi/ipmi-sim.js')", 'porthole/layers'],
  ['a service from the test kit', 'packages/testkit/src/x.ts', "export * from '@porthole/receiver'", 'porthole/layers'],
  ['another package by path', 'services/receiver/src/x.ts', "export * from '../../../packages/shared/src/amqp/index.js'", 'porthole/layers'],
  ['a package\'s compiled files', 'services/receiver/src/x.ts', "export * from '@porthole/shared/dist/src/amqp/index.js'", 'porthole/exports-only'],
  ['a third-party package\'s internals', 'services/console-gateway/src/x.ts', "import { createRequire } from 'node:module'\nexport const C = createRequire(import.meta.url)('guacamole-lite/lib/ClientConnection.js') as unknown\nexport const D = require('guacamole-lite/lib/Crypt.js') as unknown", 'porthole/exports-only'],
  ['an import through a variable', 'bench/src/x.ts', "const spec = '@unraid/libvirt'\nexport const lib = await import(spec) as unknown", 'porthole/static-imports'],
  ['amqplib in a service', 'services/receiver/src/x.ts', "export { connect } from 'amqplib'", 'no-restricted-imports'],
  ['ioredis in a service', 'services/agents/src/x.ts', "export { Redis } from 'ioredis'", 'no-restricted-imports'],
  ['libvirt outside the agents', 'services/api/src/x.ts', "export { Hypervisor } from '@unraid/libvirt'", 'no-restricted-imports'],
  ['libvirt in the runtime layer', 'packages/shared/src/x.ts', "export { Hypervisor } from '@unraid/libvirt'", 'no-restricted-imports'],
  ['a computed path', 'test/e2e/x.ts', "const root = '/repo'\nexport const m = await import(`${root}/services/agents/dist/src/config.js`) as unknown", 'porthole/static-imports']
]

for (const [what, file, code, rule] of caught) {
  test(`lint catches ${what} (${rule})`, async () => {
    const [result] = await eslint.lintText(code, { filePath: join(REPO_ROOT, file) })
    assert.ok(result !== undefined)
    const rules = result.messages.map(m => m.ruleId)
    assert.ok(rules.includes(rule), `${file}: expected ${rule}, got ${JSON.stringify(result.messages.map(m => `${m.ruleId}: ${m.message}`))}`)
  })
}

test('lint lets through what the layers allow', async () => {
  assert.deepEqual(await porthole('services/api/src/x.ts', [
    "import { AmqpClient } from '@porthole/shared/amqp'",
    "import { compile, type Job } from '@porthole/contracts'",
    "import { ValidationError } from '@porthole/contracts/errors'",
    "import { TypeCompiler } from '@sinclair/typebox/compiler'",
    "import { readFile } from 'node:fs/promises'",
    "import { x } from './y.js'",
    "export const all = [AmqpClient, compile, ValidationError, TypeCompiler, readFile, x] as unknown as Job[]",
    "export const lazy = await import('@sinclair/typebox')"
  ].join('\n')), [])
  const [agents] = await eslint.lintText("export { Hypervisor } from '@unraid/libvirt'\nexport { AmqpClient } from '@porthole/shared/amqp'", { filePath: join(REPO_ROOT, 'services/agents/src/x.ts') })
  assert.deepEqual(agents?.messages.map(m => m.ruleId), [], 'the agents talk to libvirt')
  assert.deepEqual(await porthole('services/api/test/x.test.ts', "export { startStack } from '@porthole/testkit'\nexport { startIpmiSim } from '@porthole/testkit/ipmi'\nexport * from '../src/app.js'"), [])
  assert.deepEqual(await porthole('packages/testkit/src/x.ts', "export { names } from '@porthole/shared/amqp'\nexport type { Job } from '@porthole/contracts'"), [])
  assert.deepEqual(await porthole('packages/shared/src/x.ts', "export type { Job } from '@porthole/contracts'"), [])
  assert.deepEqual(await porthole('packages/contracts/src/x.ts', "export { Type } from '@sinclair/typebox'\nexport { compile } from './validate.js'"), [])
  // The one documented reach into guacamole-lite, from its one file.
  assert.deepEqual(await porthole('services/console-gateway/src/guac.ts', "import { createRequire } from 'node:module'\nconst require = createRequire(import.meta.url)\nexport const C = require('guacamole-lite/lib/ClientConnection.js') as unknown"), [])
})

test('the contract layer bundles for a browser page: no Node built-in anywhere in what it imports', async () => {
  const { build } = await import('esbuild')
  const r = await build({
    entryPoints: [join(REPO_ROOT, 'packages', 'contracts', 'dist', 'src', 'index.js'), join(REPO_ROOT, 'packages', 'contracts', 'dist', 'src', 'errors.js')],
    bundle: true, platform: 'browser', format: 'esm', write: false, outdir: 'out', logLevel: 'silent'
  })
  assert.deepEqual(r.errors, [])
  assert.equal(r.outputFiles.length, 2)
  for (const f of r.outputFiles) assert.doesNotMatch(f.text, /\bfrom ?["']node:|require\(["'](node:)?(fs|path|crypto|net|os)["']\)/)
})
