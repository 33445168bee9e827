import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { ConfigError } from '@porthole/shared/config'
import { mainOf } from '@porthole/testkit'
import { allowedOrigins, readConfig } from '../src/config.js'
import { consoleUrl } from '../src/minter.js'

const key = (): string => randomBytes(32).toString('base64')

test('CONSOLE_KEY and CONSOLE_TRANSIT_KEY are required; PORTHOLE_SECRET_KEY is not read', () => {
  assert.throws(() => readConfig({ CONSOLE_TRANSIT_KEY: key() }), (e: unknown) => e instanceof ConfigError && e.variable === 'CONSOLE_KEY')
  assert.throws(() => readConfig({ CONSOLE_KEY: key() }), (e: unknown) => e instanceof ConfigError && e.variable === 'CONSOLE_TRANSIT_KEY')
  const c = readConfig({ CONSOLE_KEY: key(), CONSOLE_TRANSIT_KEY: key(), PORTHOLE_SECRET_KEY: key() }) as Record<string, unknown>
  assert.ok(!Object.keys(c).some(k => k.startsWith('PORTHOLE_SECRET') || k === 'PORTHOLE_OLD_SECRET_KEYS'), 'the gateway has no setting for the server credentials key')
})

test('allowed origins default to the origin of PUBLIC_GATEWAY_URL, prefix and all', () => {
  const c = readConfig({ CONSOLE_TRANSIT_KEY: key(), CONSOLE_KEY: key(), PUBLIC_GATEWAY_URL: 'https://Example.com/console-gw/' })
  assert.deepEqual([...allowedOrigins(c)], ['https://example.com'])
  const d = readConfig({ CONSOLE_TRANSIT_KEY: key(), CONSOLE_KEY: key(), ALLOWED_ORIGINS: 'https://a.example, https://b.example/' })
  assert.deepEqual([...allowedOrigins(d)], ['https://a.example', 'https://b.example'])
})

test('console URLs keep the prefix and carry the token in the fragment only', () => {
  const u = new URL(consoleUrl('https://example.com/console-gw/', '0b9f8a3e-4f0a-4c39-9a39-111111111111', 'tok_en'))
  assert.equal(u.pathname, '/console-gw/s/0b9f8a3e-4f0a-4c39-9a39-111111111111')
  assert.equal(u.search, '')
  assert.equal(u.hash, '#tok_en')
})

test('the process exits non-zero naming the bad variable', () => {
  const main = mainOf('console-gateway')
  const r = spawnSync(process.execPath, [main], { env: { PATH: process.env.PATH, CONSOLE_TRANSIT_KEY: key(), CONSOLE_KEY: key(), GATEWAY_PORT: 'eighty' }, encoding: 'utf8', timeout: 10_000 })
  assert.notEqual(r.status, 0)
  assert.match(r.stderr, /GATEWAY_PORT/)
  const same = key()
  const s = spawnSync(process.execPath, [main], { env: { PATH: process.env.PATH, CONSOLE_TRANSIT_KEY: same, CONSOLE_KEY: same, RABBITMQ_URL: 'amqp://127.0.0.1:1' }, encoding: 'utf8', timeout: 10_000 })
  assert.notEqual(s.status, 0)
  assert.match(s.stderr, /CONSOLE_KEY/)
})
