import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PortholeError } from '@porthole/contracts/errors'
import { consoleHost, isActiveDomainXml, parseVncDisplay, uriHost } from '../../src/kvm/graphics.js'

test('parseVncDisplay reads port, listen and password of the VNC display', () => {
  const xml = `<domain><devices><graphics type='spice' port='5901'/>
    <graphics type='vnc' port='5905' autoport='yes' listen='10.1.2.3' passwd='a&amp;b&lt;c'>
      <listen type='address' address='10.1.2.3'/>
    </graphics></devices></domain>`
  assert.deepEqual(parseVncDisplay(xml), { port: 5905, listen: '10.1.2.3', password: 'a&b<c' })
})

test('parseVncDisplay takes the listen address from the <listen> child when the attribute is absent', () => {
  const xml = `<graphics type="vnc" port="5900" autoport="yes"><listen type="address" address="192.0.2.7"/></graphics>`
  assert.deepEqual(parseVncDisplay(xml), { port: 5900, listen: '192.0.2.7', password: undefined })
})

test('parseVncDisplay: no VNC display, port -1 or a socket display is a conflict', () => {
  for (const xml of ['<domain/>', "<graphics type='vnc' port='-1' autoport='yes'/>", "<graphics type='vnc' socket='/run/x.sock'/>"]) {
    assert.throws(() => parseVncDisplay(xml), (e: unknown) => e instanceof PortholeError && e.code === 'conflict' && e.status === 409)
  }
})

test('consoleHost maps loopback and wildcard listens through the URI', () => {
  assert.equal(consoleHost('10.0.0.9', 'qemu:///system', {}), '10.0.0.9')
  assert.equal(consoleHost('127.0.0.1', 'qemu:///system', {}), '127.0.0.1')
  assert.equal(consoleHost(undefined, 'qemu+ssh://root@kvm1.example:2222/system', {}), 'kvm1.example')
  assert.equal(consoleHost('0.0.0.0', 'qemu+tcp://[2001:db8::1]/system', {}), '2001:db8::1')
  assert.equal(consoleHost('::', 'qemu+ssh://kvm1/system', { 'qemu+ssh://kvm1/system': '10.9.9.9' }), '10.9.9.9')
  assert.equal(uriHost('qemu:///system'), undefined)
})

test('a domain XML is active when libvirt gave the domain an id (running or paused), not when it is off', () => {
  assert.equal(isActiveDomainXml("<domain type='kvm' id='7'>\n  <name>vm</name></domain>"), true)
  assert.equal(isActiveDomainXml('<domain type="kvm" id="12" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"><name>vm</name></domain>'), true)
  assert.equal(isActiveDomainXml("<domain type='kvm'>\n  <name>vm</name><uuid>1</uuid></domain>"), false)
  // An id elsewhere in the document (a disk's, a controller's) does not count.
  assert.equal(isActiveDomainXml("<domain type='kvm'><devices><controller type='usb' index='0' id='3'/></devices></domain>"), false)
  assert.equal(isActiveDomainXml('not xml'), false)
})
