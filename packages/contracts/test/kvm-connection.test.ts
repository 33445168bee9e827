// The kvm connection's allow-list: one grammar narrower than libvirt's, so that libvirt can never read a URI
// otherwise than we do (parameters split on ";", names percent-decoded) or be told to run or reach anything.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { KvmConnection, compile, kvmTarget, libvirtUriProblem, type KvmPolicy } from '../src/index.js'
import { ValidationError } from '../src/errors.js'

const KEYS: KvmPolicy = { sshKeyDir: '/etc/porthole/ssh' }

/** The member a kvmTarget refusal names. */
function refusedField (connection: unknown, policy: KvmPolicy = KEYS): string | undefined {
  try {
    kvmTarget(connection, policy)
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err))
    return err.details?.field as string | undefined
  }
  assert.fail(`accepted ${JSON.stringify(connection)}`)
}

test('the legitimate URI forms are accepted', () => {
  for (const uri of [
    'qemu:///system', 'qemu+unix:///system', 'qemu+ssh://porthole@kvm1.example/session',
    'qemu+ssh://kvm1.example/system', 'qemu+ssh://root@kvm1.example/system', 'qemu+libssh2://ops_1@10.0.0.5/system',
    'qemu+ssh://user@host:2222/system?keyfile=/etc/porthole/ssh/id_ed25519', 'qemu+ssh://h/system?no_tty=1&keyfile=/etc/porthole/ssh/kvm.key',
    'qemu+tls://host/system', 'qemu+tls://kvm1:16514/system', 'qemu://kvm1.example/system', 'qemu+tcp://127.0.0.1:16509/system',
    'qemu+tcp://[::1]:16509/system', 'qemu+ssh://[fd00::5]/session'
  ]) {
    assert.equal(libvirtUriProblem(uri, KEYS), undefined, uri)
    assert.deepEqual(kvmTarget({ uri, domain: 'web-1' }, KEYS), { uri, domain: 'web-1' })
  }
})

test('separators libvirt splits on, and percent-encoding, are refused wherever they are', () => {
  for (const [uri, why] of [
    ['qemu+ssh://kvm1.example/system?keyfile=-ewarn(q(x));command=/usr/bin/perl', /not accepted/],
    ['qemu+ssh://h/system?keyfile=/etc/porthole/ssh/k;command=/usr/bin/touch', /";" is not accepted/],
    ['qemu+ssh://h/system?no_tty=1&keyfile=/etc/porthole/ssh/k;netcat=/tmp/x', /";" is not accepted/],
    ['qemu+ssh://h/system?no_tty=1;socket=/tmp/evil', /";" is not accepted/],
    ['qemu+ssh://h/system?no_tty=1;name=test:///etc/passwd', /";" is not accepted/],
    ['qemu+ssh://h/system;command=/bin/sh', /";" is not accepted/],
    ['qemu+ssh://h/system?no_tty=1%3Bcommand=/bin/sh', /percent-encoding/],
    ['qemu+ssh://h/system?no_tty=1%26command=/bin/sh', /percent-encoding/],
    ['qemu+ssh://h/system?comm%61nd=/bin/sh', /percent-encoding/],
    ['qemu+ssh://h/system?keyfile=/etc/porthole/ssh/k&comm%61nd=/bin/sh', /percent-encoding/],
    ['qemu+ssh://h%2Dx/system', /percent-encoding/],
    ['qemu+ssh://h/system#command=/bin/sh', /"#" is not accepted/],
    ['qemu+ssh://h/system?no_tty=1 &command=/bin/sh', /" " is not accepted/]
  ] as const) {
    assert.match(libvirtUriProblem(uri, KEYS) ?? 'accepted', why, uri)
    assert.equal(refusedField({ uri, domain: 'd' }), 'uri', uri)
  }
})

test('parameters that run, reach or weaken anything are refused, as is every unknown one', () => {
  for (const name of ['command', 'netcat', 'socket', 'proxy', 'mode', 'name', 'known_hosts', 'known_hosts_verify', 'no_verify', 'pkipath', 'tls_priority', 'auth', 'sshauth', 'Keyfile', '']) {
    const uri = `qemu+ssh://h/system?${name}=1`
    assert.match(libvirtUriProblem(uri, KEYS) ?? 'accepted', /is not allowed/, uri)
  }
  assert.match(libvirtUriProblem('qemu+unix:///system?socket=/tmp/evil') ?? '', /parameter "socket"/)
  assert.match(libvirtUriProblem('qemu+ssh://h/system?no_tty=1&no_tty=1') ?? '', /twice/)
  assert.match(libvirtUriProblem('qemu+ssh://h/system?no_tty=yes') ?? '', /no_tty must be 0 or 1/)
  assert.match(libvirtUriProblem('qemu+ssh://h/system?no_tty') ?? '', /no_tty must be 0 or 1/)
  assert.match(libvirtUriProblem('qemu+tls://h/system?no_tty=1') ?? '', /ssh transports only/)
  assert.match(libvirtUriProblem('qemu+ssh://h/system?') ?? '', /is not allowed/)
})

test('a key file only from KVM_SSH_KEY_DIR, and only by name', () => {
  assert.match(libvirtUriProblem('qemu+ssh://h/system?keyfile=/etc/porthole/ssh/id') ?? '', /KVM_SSH_KEY_DIR is not set/)
  for (const file of ['/etc/shadow', '/etc/porthole/ssh/../shadow', '/etc/porthole/ssh/sub/id', '/etc/porthole/ssh/', '/etc/porthole/ssh/.hidden', '/etc/porthole/ssh/-i', '/etc/porthole/sshx/id', 'id', '-ewarn']) {
    assert.match(libvirtUriProblem(`qemu+ssh://h/system?keyfile=${file}`, KEYS) ?? 'accepted', /KVM_SSH_KEY_DIR/, file)
  }
  assert.match(libvirtUriProblem('qemu+tcp://h/system?keyfile=/etc/porthole/ssh/id', KEYS) ?? '', /ssh transports only/)
  assert.equal(libvirtUriProblem('qemu+ssh://h/system?keyfile=/etc/porthole/ssh/id', { sshKeyDir: '/etc/porthole/ssh/' }), undefined)
})

test('the test driver, other drivers and transports, and other paths are refused', () => {
  for (const [uri, why] of [
    ['test:///etc/passwd', /test driver/], ['test:///default', /test driver/], ['test+ssh://h/default', /test driver/],
    ['qemu+ext:///system?command=/bin/sh', /transport qemu\+ext/], ['xen:///system', /transport xen/], ['lxc:///', /transport lxc/],
    ['QEMU:///system', /expected a libvirt URI/], ['not a uri', /not accepted/], ['qemu:/system', /expected a libvirt URI/],
    ['qemu:///session', /local \/session/], ['qemu+unix:///session', /local \/session/], ['qemu:///embed?root=/tmp/x', /path "\/embed"/], ['qemu:///', /path "\/"/], ['qemu://', /path ""/], ['qemu:////system', /path/]
  ] as const) {
    assert.match(libvirtUriProblem(uri, KEYS) ?? 'accepted', why, uri)
  }
})

test('no password, and no user or host that ssh could read as an option', () => {
  for (const [uri, why] of [
    ['qemu+ssh://root:secret@h/system', /password/], ['qemu+ssh://root:@h/system', /password/],
    ['qemu+ssh://-oProxyCommand=x@h/system', /user "-oProxyCommand=x"/], ['qemu+ssh://-l@h/system', /user/],
    ['qemu+ssh://-oProxyCommand=x/system', /host must not begin with "-"/], ['qemu+ssh://-h:22/system', /host must not begin with "-"/],
    ['qemu+ssh://a@b@h/system', /host/], ['qemu+ssh://h_x/system', /host/], ['qemu+ssh:///system', /needs a host/],
    ['qemu+tls://h:0/system', /port/], ['qemu+tls://h:65536/system', /port/], ['qemu+tls://h:022/system', /port/], ['qemu+tls://h:/system', /port/],
    ['qemu+unix://h/system', /no host/], ['qemu://u@/system', /host/]
  ] as const) {
    assert.match(libvirtUriProblem(uri, KEYS) ?? 'accepted', why, uri)
  }
  // The refusal never repeats the password.
  assert.ok(!(libvirtUriProblem('qemu+ssh://root:hunter22@h/system') ?? '').includes('hunter22'))
})

test('KVM_ALLOWED_URIS, when set, admits those URIs only', () => {
  const only: KvmPolicy = { ...KEYS, allowedUris: ['qemu:///system', 'qemu+ssh://kvm1/system?keyfile=/etc/porthole/ssh/id'] }
  assert.equal(libvirtUriProblem('qemu:///system', only), undefined)
  assert.equal(libvirtUriProblem('qemu+ssh://kvm1/system?keyfile=/etc/porthole/ssh/id', only), undefined)
  assert.match(libvirtUriProblem('qemu+unix:///system', only) ?? '', /KVM_ALLOWED_URIS/)
  assert.match(libvirtUriProblem('qemu+tls://kvm1/system', only) ?? '', /KVM_ALLOWED_URIS/)
  // The grammar still applies to a listed URI.
  assert.match(libvirtUriProblem('test:///default', { allowedUris: ['test:///default'] }) ?? '', /test driver/)
  assert.deepEqual(kvmTarget({ transport: 'ssh', host: 'kvm1', keyFile: 'id', domain: 'd' }, only), { uri: 'qemu+ssh://kvm1/system?keyfile=/etc/porthole/ssh/id', domain: 'd' })
  assert.equal(refusedField({ transport: 'ssh', host: 'kvm2', keyFile: 'id', domain: 'd' }, only), 'host')
})

test('the structured form builds the URI in code', () => {
  assert.deepEqual(kvmTarget({ transport: 'ssh', host: 'kvm1.example', user: 'porthole', port: 2222, keyFile: 'id_ed25519', domain: 'web-1' }, KEYS),
    { uri: 'qemu+ssh://porthole@kvm1.example:2222/system?keyfile=/etc/porthole/ssh/id_ed25519', domain: 'web-1' })
  assert.deepEqual(kvmTarget({ transport: 'tls', host: 'kvm1.example', domain: 'web-1' }), { uri: 'qemu+tls://kvm1.example/system', domain: 'web-1' })
  assert.deepEqual(kvmTarget({ transport: 'tcp', host: '[::1]', port: 16509, domain: 'web-1' }), { uri: 'qemu+tcp://[::1]:16509/system', domain: 'web-1' })
  assert.deepEqual(kvmTarget({ transport: 'libssh', host: '10.0.0.5', domain: 'web-1' }), { uri: 'qemu+libssh://10.0.0.5/system', domain: 'web-1' })
  // The schema admits both forms (the API's OpenAPI document and the agents' messages use it).
  assert.equal(compile(KvmConnection, 'kvm').check({ transport: 'ssh', host: 'h', domain: 'd' }), true)
  assert.equal(compile(KvmConnection, 'kvm').check({ uri: 'qemu:///system', domain: 'd' }), true)
})

test('the structured form refuses, naming the member, what could become an option or a path', () => {
  const c = { transport: 'ssh', host: 'kvm1', domain: 'd' }
  for (const [bad, field] of [
    [{ host: '-oProxyCommand=touch /tmp/x' }, 'host'], [{ host: 'kvm1;command=/bin/sh' }, 'host'], [{ host: 'kvm1/system?command=x' }, 'host'],
    [{ host: 'kvm1%2F' }, 'host'], [{ host: '' }, 'host'], [{ user: '-oProxyCommand=x' }, 'user'], [{ user: 'root:pw' }, 'user'],
    [{ keyFile: '../../etc/shadow' }, 'keyFile'], [{ keyFile: '/etc/shadow' }, 'keyFile'], [{ keyFile: '.ssh' }, 'keyFile'], [{ keyFile: '-i' }, 'keyFile'],
    [{ transport: 'ext' }, 'transport'], [{ transport: 'unix' }, 'transport'], [{ port: 0 }, 'port'], [{ port: '22' }, 'port'],
    [{ uri: 'qemu:///system' }, 'uri'], [{ command: '/bin/sh' }, 'command'], [{ domain: undefined }, 'domain']
  ] as const) {
    assert.equal(refusedField({ ...c, ...bad }), field, JSON.stringify(bad))
  }
  assert.equal(refusedField({ ...c, transport: 'tls', keyFile: 'id' }), 'keyFile')
  assert.equal(refusedField({ ...c, keyFile: 'id' }, {}), 'keyFile', 'no KVM_SSH_KEY_DIR, no key file')
  assert.equal(refusedField({ uri: 'qemu:///system' }), 'domain')
  assert.equal(refusedField({ uri: 'test:///default', domain: 'd' }), 'uri')
})
