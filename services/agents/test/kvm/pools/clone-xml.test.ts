import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cloneName, parseCloneName, poolMac } from '@porthole/contracts'
import { cloneMetadataOf, cloneXml, firstDisk } from '../../../src/kvm/pools/clone-xml.js'

// What `virsh dumpxml --inactive` gives of a template: a UUID, a disk with a backing chain, two NICs with MACs,
// a VNC display on every address with a password, metadata of its own.
const TEMPLATE = `<domain type='kvm'>
  <name>win11-golden</name>
  <uuid>9c533ac2-2eef-49d6-ac05-af8cb7d0a3b8</uuid>
  <metadata><app:note xmlns:app='urn:example'/></metadata>
  <memory unit='KiB'>32768</memory>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/images/golden.qcow2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'><source file='/isos/tools.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='network'><mac address='52:54:00:11:22:33'/><source network='default'/><model type='virtio'/></interface>
    <interface type='user'><mac address='52:54:00:44:55:66'/></interface>
    <graphics type='vnc' port='-1' autoport='yes' listen='0.0.0.0' passwd='secret'><listen type='address' address='0.0.0.0'/></graphics>
  </devices>
</domain>`

const spec = { name: 'kiosk-2-1abcd', ns: 'prod', pool: 'kiosk', poolId: 258, slot: 2, generation: 3, overlay: '/srv/overlays/kiosk-2-1abcd.qcow2' }

test('a clone: its name, no UUID, the first disk on the overlay, deterministic MACs, a loopback display, our metadata', () => {
  const { xml, macs } = cloneXml(TEMPLATE, spec)
  assert.match(xml, /<name>kiosk-2-1abcd<\/name>/)
  assert.doesNotMatch(xml, /<uuid>/, 'libvirt gives it a fresh UUID')
  assert.deepEqual(firstDisk(xml), { index: 0, type: 'file', file: spec.overlay, format: 'qcow2', readonly: false })
  assert.doesNotMatch(xml, /golden\.qcow2/, 'the golden image is named by the overlay only')
  assert.doesNotMatch(xml, /<backingStore/)
  assert.match(xml, /tools\.iso/, 'other devices stay')
  assert.deepEqual(macs, ['0a:50:01:02:02:00', '0a:50:01:02:02:01'])
  assert.doesNotMatch(xml, /52:54:00/)
  assert.equal([...xml.matchAll(/<graphics\b/g)].length, 1)
  assert.match(xml, /<graphics type='vnc' autoport='yes' listen='127\.0\.0\.1'>/)
  assert.doesNotMatch(xml, /passwd|0\.0\.0\.0/)
  assert.deepEqual(cloneMetadataOf(xml), { ns: 'prod', pool: 'kiosk', slot: 2, generation: 3 })
  assert.match(xml, /<app:note xmlns:app='urn:example'\/>/, 'the template\'s own metadata stays')
})

test('metadata as libvirt writes it back (double quotes, its own prefix) is read; a domain without ours is no clone', () => {
  const back = '<metadata><p:clone xmlns:p="urn:porthole:pool:1" ns="t1" pool="a-b" slot="0" generation="1"/></metadata>'
  assert.deepEqual(cloneMetadataOf(back), { ns: 't1', pool: 'a-b', slot: 0, generation: 1 })
  assert.equal(cloneMetadataOf(TEMPLATE), undefined)
  assert.equal(cloneMetadataOf('<metadata><p:clone xmlns:p="urn:other" pool="a" slot="0" generation="1"/></metadata>'), undefined)
})

test('clone names and MACs: one per pool, slot and NIC; names parse back, whatever hyphens the pool has', () => {
  assert.equal(poolMac(1, 0, 0), '0a:50:00:01:00:00')
  assert.equal(poolMac(65535, 31, 7), '0a:50:ff:ff:1f:07')
  const n = cloneName('branch-12', 3, 'k9x2')
  assert.equal(n, 'branch-12-3-k9x2')
  assert.deepEqual(parseCloneName(n), { pool: 'branch-12', slot: 3, serial: 'k9x2' })
  assert.equal(parseCloneName('porthole-test-x-1234abcd'), undefined, 'a test domain is no clone')
})
