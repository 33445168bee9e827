import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ovirtEngineUrl } from '../src/index.js'

test('an oVirt engine URL with or without /api and a trailing slash has one normal form', () => {
  for (const url of [
    'https://engine.example/ovirt-engine',
    'https://engine.example/ovirt-engine/',
    'https://engine.example/ovirt-engine/api',
    'https://engine.example/ovirt-engine/api/',
    'https://engine.example/ovirt-engine/api/v4',
    'https://ENGINE.example:443/ovirt-engine/api'
  ]) assert.deepEqual(ovirtEngineUrl(url), { url: 'https://engine.example/ovirt-engine' }, url)
  assert.deepEqual(ovirtEngineUrl('https://10.0.0.5:8443/ovirt-engine/api'), { url: 'https://10.0.0.5:8443/ovirt-engine' })
  assert.deepEqual(ovirtEngineUrl('https://[2001:db8::1]/ovirt-engine/'), { url: 'https://[2001:db8::1]/ovirt-engine' })
  // Behind a reverse proxy, under a prefix of its own.
  assert.deepEqual(ovirtEngineUrl('https://gw.example/dc1/ovirt-engine/api'), { url: 'https://gw.example/dc1/ovirt-engine' })
})

test('anything else is refused with a reason', () => {
  for (const [url, why] of [
    ['http://engine.example/ovirt-engine', /https only/],
    ['https://admin:pw@engine.example/ovirt-engine', /no user name or password/],
    ['https://engine.example/ovirt-engine/api?x=1', /no query or fragment/],
    ['https://engine.example/ovirt-engine?', /no query or fragment/],
    ['https://engine.example/ovirt-engine#top', /no query or fragment/],
    ['https://engine.example', /must end in \/ovirt-engine/],
    ['https://engine.example/', /must end in \/ovirt-engine/],
    ['https://engine.example/api', /must end in \/ovirt-engine/],
    ['https://engine.example/ovirt-engine/api/api', /must end in \/ovirt-engine/],
    ['https://engine.example/ovirt-engine/sso', /must end in \/ovirt-engine/],
    ['https://engine.example//ovirt-engine', /must end in \/ovirt-engine/],
    ['https://engine.example/my-ovirt-engine', /must end in \/ovirt-engine/],
    ['engine.example/ovirt-engine', /not a URL/]
  ] as const) {
    const r = ovirtEngineUrl(url)
    assert.ok('problem' in r, `${url} was accepted as ${JSON.stringify(r)}`)
    assert.match(r.problem, why, url)
  }
})
