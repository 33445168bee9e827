import { test } from 'node:test'
import assert from 'node:assert/strict'
import { brokerNodes, nodeAddress } from '../../src/amqp/index.js'
import { commonSettings, loadConfig } from '../../src/config/index.js'

test('a node list takes the first entry\'s credentials, virtual host and query for bare host:port entries', () => {
  assert.deepEqual(brokerNodes('amqp://u:p%40ss@h1:5672/vh?heartbeat=5, h2:5673 ,amqp://h3'), [
    'amqp://u:p%40ss@h1:5672/vh?heartbeat=5',
    'amqp://u:p%40ss@h2:5673/vh?heartbeat=5',
    'amqp://u:p%40ss@h3/vh?heartbeat=5'
  ])
  assert.deepEqual(brokerNodes('amqp://guest:guest@127.0.0.1:5672'), ['amqp://guest:guest@127.0.0.1:5672'])
  assert.deepEqual(brokerNodes('amqps://a:b@x,amqps://c:d@y:1').map(nodeAddress), ['x:5671', 'y:1'])
  assert.equal(brokerNodes('amqps://a:b@x,amqps://c:d@y:1')[1], 'amqps://c:d@y:1', 'an entry with its own credentials keeps them')
})

test('RABBITMQ_URL accepts a node list and names itself when an entry is bad; REDIS_SENTINELS wants host:port', () => {
  const ok = loadConfig(commonSettings, { RABBITMQ_URL: 'amqp://g:g@a:1,b:2', REDIS_SENTINELS: 'a:26379, [::1]:26380' })
  assert.equal(ok.RABBITMQ_URL, 'amqp://g:g@a:1,b:2')
  assert.deepEqual(ok.REDIS_SENTINELS, [{ host: 'a', port: 26379 }, { host: '::1', port: 26380 }])
  assert.throws(() => loadConfig(commonSettings, { RABBITMQ_URL: 'amqp://g:g@a:1,http://b:2' }), /RABBITMQ_URL: expected amqp or amqps/)
  assert.throws(() => loadConfig(commonSettings, { RABBITMQ_URL: ',' }), /RABBITMQ_URL/)
  assert.throws(() => loadConfig(commonSettings, { REDIS_SENTINELS: 'a:26379,b' }), /REDIS_SENTINELS: expected host:port entries, got "b"/)
})
