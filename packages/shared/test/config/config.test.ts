import { test } from 'node:test'
import assert from 'node:assert/strict'
import { bool, ConfigError, commonSettings, int, list, loadConfig, required, secret } from '../../src/config/index.js'

const spec = {
  ...commonSettings,
  PORT: int('port', 8080, 1, 65535),
  DEBUG: bool('debug', false),
  ORIGINS: list('origins', []),
  KEY: required(secret('a key'))
}

test('defaults apply, values parse, and the result is frozen', () => {
  const c = loadConfig(spec, { KEY: 'k', PORT: '9000', DEBUG: 'yes', ORIGINS: 'a, b,' })
  assert.equal(c.PORT, 9000)
  assert.equal(c.DEBUG, true)
  assert.deepEqual(c.ORIGINS, ['a', 'b'])
  assert.equal(c.RABBITMQ_URL, 'amqp://guest:guest@127.0.0.1:5672')
  assert.equal(c.PORTHOLE_NAMESPACE, 'porthole')
  assert.ok(Object.isFrozen(c))
})

test('a bad or missing value names its variable', () => {
  const bad = (env: Record<string, string>, variable: string): void => {
    assert.throws(() => loadConfig(spec, env), (e: unknown) => e instanceof ConfigError && e.variable === variable && e.message.startsWith(variable))
  }
  bad({}, 'KEY')
  bad({ KEY: 'k', PORT: '80a' }, 'PORT')
  bad({ KEY: 'k', PORT: '70000' }, 'PORT')
  bad({ KEY: 'k', DEBUG: 'maybe' }, 'DEBUG')
  bad({ KEY: 'k', RABBITMQ_URL: 'http://x' }, 'RABBITMQ_URL')
  bad({ KEY: 'k', PORTHOLE_NAMESPACE: 'Bad Name' }, 'PORTHOLE_NAMESPACE')
  bad({ KEY: 'k', LOG_LEVEL: 'loud' }, 'LOG_LEVEL')
})

test('kvm policy settings: a key directory by absolute path, allowed URIs that could be used', async () => {
  const { kvmPolicyOf, kvmPolicySettings } = await import('../../src/config/index.js')
  const load = (env: Record<string, string>) => kvmPolicyOf(loadConfig(kvmPolicySettings, env))
  assert.deepEqual(load({}), { sshKeyDir: undefined, allowedUris: undefined })
  assert.deepEqual(load({ KVM_SSH_KEY_DIR: '/etc/porthole/ssh/', KVM_ALLOWED_URIS: 'qemu:///system, qemu+ssh://kvm1/system?keyfile=/etc/porthole/ssh/id' }),
    { sshKeyDir: '/etc/porthole/ssh', allowedUris: ['qemu:///system', 'qemu+ssh://kvm1/system?keyfile=/etc/porthole/ssh/id'] })
  const bad = (env: Record<string, string>, variable: string): void => {
    assert.throws(() => load(env), (e: unknown) => e instanceof ConfigError && e.variable === variable, JSON.stringify(env))
  }
  bad({ KVM_SSH_KEY_DIR: 'relative/dir' }, 'KVM_SSH_KEY_DIR')
  bad({ KVM_SSH_KEY_DIR: '/' }, 'KVM_SSH_KEY_DIR')
  bad({ KVM_SSH_KEY_DIR: '/etc/porthole/../shadow' }, 'KVM_SSH_KEY_DIR')
  bad({ KVM_SSH_KEY_DIR: '/etc/port hole' }, 'KVM_SSH_KEY_DIR')
  bad({ KVM_ALLOWED_URIS: ' , ' }, 'KVM_ALLOWED_URIS')
  bad({ KVM_ALLOWED_URIS: 'test:///default' }, 'KVM_ALLOWED_URIS')
  bad({ KVM_ALLOWED_URIS: 'qemu+ssh://kvm1/system?keyfile=/etc/porthole/ssh/id' }, 'KVM_ALLOWED_URIS') // no key directory set
})
