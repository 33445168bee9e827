// The agents' settings that reach their child processes and the thread-pool check: read through config.ts
// (the only reader of the environment), and what an ipmitool child is given — a program on the PATH setting,
// run for real, prints the environment it got.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { testSecretKey } from '@porthole/testkit'
import { readConfig } from '../src/config.js'
import { runIpmitool } from '../src/ipmi/ipmitool.js'
import { threadPoolWarning } from '../src/threadpool.js'

const base = { PORTHOLE_SECRET_KEY: testSecretKey(), CONSOLE_TRANSIT_KEY: testSecretKey(), AGENT_TYPES: 'kvm' }

test('PATH and UV_THREADPOOL_SIZE come from the settings; the pool check warns below 16 and names the value', () => {
  const c = readConfig({ ...base, PATH: '/opt/ipmi/bin:/usr/bin', UV_THREADPOOL_SIZE: '8' })
  assert.equal(c.PATH, '/opt/ipmi/bin:/usr/bin')
  assert.equal(c.UV_THREADPOOL_SIZE, '8')
  assert.match(threadPoolWarning(c.UV_THREADPOOL_SIZE) ?? '', /UV_THREADPOOL_SIZE is 8: set it to 64/)
  assert.match(threadPoolWarning(readConfig(base).UV_THREADPOOL_SIZE) ?? '', /unset \(libuv uses 4 threads\)/)
  assert.equal(threadPoolWarning(readConfig({ ...base, UV_THREADPOOL_SIZE: '64' }).UV_THREADPOOL_SIZE), undefined)
  assert.equal(readConfig(base).PATH, '/usr/bin:/bin', 'a default when the environment has none')
})

test('an ipmitool child is found on the PATH setting and gets only PATH, LANG and the BMC password', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-ipmitool-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  // Stands in for ipmitool: prints its environment.
  await writeFile(join(dir, 'ipmitool'), '#!/bin/sh\nenv\n')
  await chmod(join(dir, 'ipmitool'), 0o755)
  const c = readConfig({ ...base, PATH: `${dir}:/usr/bin:/bin`, PORTHOLE_SECRET_KEY_ID: 'k1' })
  const bmc = { host: '192.0.2.1', port: 623, username: 'admin', password: 'bmc-s3cret', cipherSuite: 3 }
  const r = await runIpmitool(bmc, ['chassis', 'power', 'status'], { ipmitool: 'ipmitool', searchPath: c.PATH, signal: new AbortController().signal, timeoutMs: 10_000, packetTimeoutS: 1, retransmits: 1 })
  const env = Object.fromEntries(r.stdout.trim().split('\n').map(l => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
  assert.equal(env.PATH, c.PATH)
  assert.equal(env.IPMI_PASSWORD, 'bmc-s3cret')
  assert.equal(env.LANG, 'C')
  // /bin/sh may add its own (PWD, SHLVL, _): nothing of the agents' environment is there.
  for (const k of Object.keys(env)) assert.ok(['PATH', 'LANG', 'IPMI_PASSWORD', 'PWD', 'SHLVL', '_', 'OLDPWD'].includes(k), `unexpected ${k} in the child's environment`)
  assert.ok(!r.stdout.includes(base.PORTHOLE_SECRET_KEY))
})
