import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError } from '@porthole/shared/config'
import { loadApiConfig } from '../src/config.js'

const key = Buffer.alloc(32, 7).toString('base64')
const transit = Buffer.alloc(32, 8).toString('base64')

test('defaults match the design', () => {
  const c = loadApiConfig({ PORTHOLE_SECRET_KEY: key, CONSOLE_TRANSIT_KEY: transit })
  assert.equal(c.API_HOST, '0.0.0.0')
  assert.equal(c.API_PORT, 8080)
  assert.equal(c.PORTHOLE_ADMIN_TOKEN, undefined)
  assert.equal(c.JOB_DEADLINE_POWER_SECONDS, 120)
  assert.equal(c.JOB_DEADLINE_STATUS_SECONDS, 30)
  assert.equal(c.JOB_DEADLINE_CONSOLE_SECONDS, 30)
  assert.equal(c.MAX_WAIT_SECONDS, 60)
  assert.equal(c.BODY_LIMIT_BYTES, 65536)
  assert.equal(c.TRUST_PROXY, false)
  assert.ok(Object.isFrozen(c))
})

test('a bad value names its variable', () => {
  assert.throws(() => loadApiConfig({ PORTHOLE_SECRET_KEY: key, CONSOLE_TRANSIT_KEY: transit, API_PORT: 'eighty' }), (e: unknown) => e instanceof ConfigError && e.variable === 'API_PORT')
  assert.throws(() => loadApiConfig({ PORTHOLE_SECRET_KEY: key, CONSOLE_TRANSIT_KEY: transit, TRUST_PROXY: 'maybe' }), (e: unknown) => e instanceof ConfigError && e.variable === 'TRUST_PROXY')
  assert.throws(() => loadApiConfig({ PORTHOLE_SECRET_KEY: key, CONSOLE_TRANSIT_KEY: transit, PORTHOLE_ADMIN_TOKEN: 'short' }), (e: unknown) => e instanceof ConfigError && e.variable === 'PORTHOLE_ADMIN_TOKEN')
  assert.throws(() => loadApiConfig({}), (e: unknown) => e instanceof ConfigError && e.variable === 'PORTHOLE_SECRET_KEY')
  assert.throws(() => loadApiConfig({ PORTHOLE_SECRET_KEY: key }), (e: unknown) => e instanceof ConfigError && e.variable === 'CONSOLE_TRANSIT_KEY')
})
