// Issue #8, part 1: a kvm server record cannot make the agents run or reach anything. Every URI below
// smuggles a command, a socket or a file past a parser that is not libvirt's own (libvirt splits parameters
// on ";" as well as "&" and percent-decodes their names; its test driver reads any file it is given; ssh
// reads a host or user beginning with "-" as an option). The API refuses each, naming connection.uri; a
// record written straight into Redis (with the shared store's own functions) is refused by the agent as a
// failed job with code `invalid`, and nothing ran: the script the URI names never leaves its marker, no ssh
// process starts (a stand-in `ssh` first on the agents' PATH logs every start), the socket is never dialled,
// and the file's contents appear nowhere.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { JobRecord } from '@porthole/contracts'
import { pipeline, tinyDomain, waitFor, type ApiResponse, type Pipeline } from '@porthole/testkit'

const work = mkdtempSync(join(tmpdir(), 'porthole-sec-'))
/** A word only the refused records carry: it must never reach a process's arguments. */
const tok = `neg${randomBytes(4).toString('hex')}`
const evilDir = join(work, tok)
const keyDir = join(work, 'keys')
const binDir = join(work, 'bin')
for (const d of [evilDir, keyDir, binDir]) mkdirSync(d)
/** What a smuggled `command=` would run in place of ssh: it leaves a marker. */
const marker = join(evilDir, 'ran')
const evil = join(evilDir, 'evil.sh')
writeFileSync(evil, `#!/bin/sh\necho "$@" >> '${marker}'\nexit 1\n`)
chmodSync(evil, 0o755)
/** The stand-in ssh: logs its arguments, then fails as an unreachable host would. */
const sshLog = join(work, 'ssh.log')
writeFileSync(join(binDir, 'ssh'), `#!/bin/sh\necho "$@" >> '${sshLog}'\nexit 255\n`)
chmodSync(join(binDir, 'ssh'), 0o755)
writeFileSync(join(keyDir, 'id_test'), 'not a real key\n', { mode: 0o600 })
/** A file the test driver would read and quote from. */
const canary = `canary-${randomBytes(6).toString('hex')}`
const secretFile = join(evilDir, 'passwd')
writeFileSync(secretFile, `root:x:0:0:${canary}:/root:/bin/sh\n`)
/** A socket a smuggled `socket=` would make libvirt dial. */
const sock = join(evilDir, 'sock')
let dialled = 0
const listener: Server = createServer(s => { dialled++; s.destroy() })

/** [what, URI]: each smuggles something past a parser that is not libvirt's. */
const SMUGGLED: ReadonlyArray<readonly [string, string]> = [
  ['the finding: ";" after keyfile', 'qemu+ssh://kvm1.example/system?keyfile=-ewarn(q(x));command=/usr/bin/perl'],
  ['";" after an allowed parameter', `qemu+ssh://${tok}.example/system?keyfile=${keyDir}/id_test;command=${evil}`],
  ['"&" then ";"', `qemu+ssh://${tok}.example/system?no_tty=1&keyfile=${keyDir}/id_test;command=${evil}`],
  ['";" then "&"', `qemu+ssh://${tok}.example/system?keyfile=${keyDir}/id_test;command=${evil}&no_tty=1`],
  ['netcat= after ";"', `qemu+ssh://${tok}.example/system?no_tty=1;netcat=${evil}`],
  ['name= after ";"', `qemu+ssh://${tok}.example/system?no_tty=1;name=test://${secretFile}`],
  ['socket= after ";"', `qemu+unix:///system?no_tty=1;socket=${sock}`],
  ['a percent-encoded name', `qemu+ssh://${tok}.example/system?keyfile=${keyDir}/id_test;comm%61nd=${evil}`],
  ['a percent-encoded name after "&"', `qemu+ssh://${tok}.example/system?no_tty=1&comm%61nd=${evil}`],
  ['a percent-encoded ";"', `qemu+ssh://${tok}.example/system?no_tty=1%3Bcommand=${evil}`],
  ['a percent-encoded "&"', `qemu+ssh://${tok}.example/system?no_tty=1%26command=${evil}`],
  ['the test driver on a file', `test://${secretFile}`],
  ['the test driver', 'test:///default'],
  ['the ext transport', `qemu+ext:///system?command=${evil}`],
  ['a user beginning with "-"', `qemu+ssh://-oProxyCommand=${tok}@${tok}.example/system`],
  ['a host beginning with "-"', `qemu+ssh://-oProxyCommand=${tok}/system`],
  ['a host beginning with "-", percent-encoded', `qemu+ssh://-oProxyCommand=${encodeURIComponent(evil)}/system`],
  ['a password in the userinfo', `qemu+ssh://root:pw-${tok}@${tok}.example/system`]
]

const cleanups: Array<() => Promise<void>> = []
let p: Pipeline
before(async () => {
  await new Promise<void>(resolve => listener.listen(sock, resolve))
  p = await pipeline({ after: fn => cleanups.unshift(fn) }, {
    services: ['api', 'receiver', 'agents'],
    env: { KVM_SSH_KEY_DIR: keyDir },
    envFor: { agents: { PATH: `${binDir}:${process.env.PATH ?? '/usr/bin:/bin'}` } }
  })
})
after(async () => {
  for (const fn of cleanups) await fn()
  await new Promise(resolve => listener.close(resolve))
  rmSync(work, { recursive: true, force: true })
})

function refusedNaming (r: ApiResponse, field: string, what: string): void {
  assert.equal(r.status, 400, `${what}: ${JSON.stringify(r.body)}`)
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/, what)
  assert.equal(r.body.field, field, `${what}: ${JSON.stringify(r.body)}`)
  assert.match(r.body.detail, new RegExp(`^${field.replace('.', '\\.')}: `), what)
  assert.ok(!JSON.stringify(r.body).includes(`pw-${tok}`), `${what}: the password is not echoed`)
}

/** Nothing a refused record names ran or was reached. */
function nothingRan (): void {
  assert.equal(existsSync(marker), false, `the smuggled command ran: ${existsSync(marker) ? readFileSync(marker, 'utf8') : ''}`)
  const started = existsSync(sshLog) ? readFileSync(sshLog, 'utf8') : ''
  assert.ok(!started.includes(tok) && !started.includes('kvm1.example'), `ssh was started for a refused record: ${started}`)
  assert.equal(dialled, 0, 'the smuggled socket was dialled')
  assert.ok(!p.stack.logs().includes(canary), 'the test driver read the file')
  assert.ok(!p.stack.logs().includes(`pw-${tok}`), 'a password in a URI was logged')
}

test('the API refuses every smuggling URI naming connection.uri, on create and on change, and stores nothing', async () => {
  const before = (await p.stack.api('GET', '/v1/servers')).body.length
  const good = await p.stack.api('POST', '/v1/servers', { name: 'good', tenantId: p.tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'good' } })
  assert.equal(good.status, 201, JSON.stringify(good.body))
  for (const [what, uri] of SMUGGLED) {
    refusedNaming(await p.stack.api('POST', '/v1/servers', { name: 'evil', tenantId: p.tenantId, agent: 'kvm', connection: { uri, domain: 'x' } }), 'connection.uri', what)
    refusedNaming(await p.stack.api('PATCH', `/v1/servers/${good.body.id}`, { connection: { uri } }), 'connection.uri', `${what} (PATCH)`)
  }
  const list = (await p.stack.api('GET', '/v1/servers')).body as Array<{ id: string, connection: { uri?: string } }>
  assert.equal(list.length, before + 1)
  assert.equal(list.find(s => s.id === good.body.id)?.connection.uri, 'qemu:///system')
  nothingRan()
})

test('the API refuses structured connections whose members could become an option or a path, naming the member', async () => {
  const base = { transport: 'ssh', host: 'kvm1.example', domain: 'x' }
  for (const [bad, field] of [
    [{ host: `-oProxyCommand=${evil}` }, 'connection.host'],
    [{ host: `${tok}.example/system?command=${evil}` }, 'connection.host'],
    [{ host: `${tok}.example;command=${evil}` }, 'connection.host'],
    [{ user: `-oProxyCommand=${evil}` }, 'connection.user'],
    [{ user: `root:pw-${tok}` }, 'connection.user'],
    [{ keyFile: '../../../etc/shadow' }, 'connection.keyFile'],
    [{ keyFile: `${keyDir}/id_test` }, 'connection.keyFile'],
    [{ transport: 'ext' }, 'connection.transport'],
    [{ transport: 'tls', keyFile: 'id_test' }, 'connection.keyFile'],
    [{ command: evil }, 'connection.command']
  ] as const) {
    refusedNaming(await p.stack.api('POST', '/v1/servers', { name: 'evil', tenantId: p.tenantId, agent: 'kvm', connection: { ...base, ...bad } }), field, JSON.stringify(bad))
  }
  nothingRan()
})

test('records written straight into Redis are refused by the agent before any libvirt call, and nothing runs', async () => {
  const servers = await Promise.all(SMUGGLED.map(async ([, uri]) => await p.addServer('kvm', { uri, domain: 'x' })))
  const structured = await Promise.all([
    { transport: 'ssh', host: `-oProxyCommand=${evil}`, domain: 'x' },
    { transport: 'ssh', host: `${tok}.example`, user: `-oProxyCommand=${evil}`, domain: 'x' },
    { transport: 'ssh', host: `${tok}.example`, keyFile: `../${tok}/evil.sh`, domain: 'x' },
    { transport: 'ssh', host: `${tok}.example/system?command=${evil}`, domain: 'x' }
  ].map(async c => await p.addServer('kvm', c)))
  const all = [...servers, ...structured]
  const jobs = await Promise.all(all.map(async s => await p.submit(s, 'status')))
  const records: JobRecord[] = await Promise.all(jobs.map(async j => await p.finished(j.id, 30_000)))
  records.forEach((r, i) => {
    const what = i < SMUGGLED.length ? SMUGGLED[i]?.[0] : JSON.stringify(structured[i - SMUGGLED.length]?.connection)
    assert.equal(r.state, 'failed', `${what}: ${JSON.stringify(r)}`)
    assert.equal(r.error?.code, 'invalid', `${what}: ${JSON.stringify(r.error)}`)
    assert.equal(r.error?.retryable, false, what)
    assert.match(r.error?.message ?? '', /no valid kvm connection: (uri|host|user|keyFile): /, what)
    assert.ok(!JSON.stringify(r).includes(canary) && !JSON.stringify(r).includes(`pw-${tok}`), what)
  })
  nothingRan()
})

test('the legitimate forms still work: a local domain, and a structured ssh connection with a key from KVM_SSH_KEY_DIR', async (t) => {
  // The controls: the agent under this configuration does reach libvirt, and the stand-in ssh does log.
  const vm = await tinyDomain(t)
  const local = await p.stack.api('POST', '/v1/servers', { name: vm.name, tenantId: p.tenantId, agent: 'kvm', connection: { uri: vm.uri, domain: vm.name } })
  assert.equal(local.status, 201, JSON.stringify(local.body))
  const status = await p.stack.api('GET', `/v1/servers/${local.body.id}/status?wait=20`)
  assert.equal(status.status, 200, JSON.stringify(status.body))
  assert.equal(status.body.power, 'on')
  assert.equal(await vm.state(), 'running')

  const closed = await closedPort()
  const remote = await p.stack.api('POST', '/v1/servers', {
    name: 'remote', tenantId: p.tenantId, agent: 'kvm',
    connection: { transport: 'ssh', host: '127.0.0.1', port: closed, user: 'porthole', keyFile: 'id_test', domain: 'web-1' }
  })
  assert.equal(remote.status, 201, JSON.stringify(remote.body))
  assert.equal(remote.body.connection.keyFile, 'id_test')
  const job = await p.submit(remote.body, 'status')
  const r = await p.finished(job.id, 30_000)
  assert.equal(r.state, 'failed', JSON.stringify(r))
  assert.equal(r.error?.code, 'connection', JSON.stringify(r.error))
  // libvirt itself ran ssh with the key from the directory, the port and the user, and the host last.
  const args = await waitFor(() => existsSync(sshLog) && readFileSync(sshLog, 'utf8').split('\n').find(l => l.includes(`-p ${closed}`)), 10_000, 'the ssh start')
  assert.match(args, new RegExp(`-i ${keyDir}/id_test\\b`))
  assert.match(args, /-l porthole\b/)
  assert.match(args, /\b127\.0\.0\.1 sh -c/)

  // The URI form with the same key is accepted as well.
  const uri = `qemu+ssh://porthole@127.0.0.1:${closed}/system?keyfile=${keyDir}/id_test&no_tty=1`
  const byUri = await p.stack.api('POST', '/v1/servers', { name: 'remote-uri', tenantId: p.tenantId, agent: 'kvm', connection: { uri, domain: 'web-1' } })
  assert.equal(byUri.status, 201, JSON.stringify(byUri.body))
  nothingRan()
})

test('a server changes form by PATCH: the new members, and null for the old ones', async () => {
  const s = await p.stack.api('POST', '/v1/servers', { name: 'switch', tenantId: p.tenantId, agent: 'kvm', connection: { uri: 'qemu:///system', domain: 'web-1' } })
  assert.equal(s.status, 201, JSON.stringify(s.body))
  // Both forms at once is neither.
  refusedNaming(await p.stack.api('PATCH', `/v1/servers/${s.body.id}`, { connection: { transport: 'ssh', host: 'kvm1.example' } }), 'connection.uri', 'both forms')
  const to = await p.stack.api('PATCH', `/v1/servers/${s.body.id}`, { connection: { transport: 'ssh', host: 'kvm1.example', keyFile: 'id_test', uri: null } })
  assert.equal(to.status, 200, JSON.stringify(to.body))
  assert.deepEqual(to.body.connection, { transport: 'ssh', host: 'kvm1.example', keyFile: 'id_test', domain: 'web-1' })
  assert.deepEqual((await p.servers.get(s.body.id))?.connection, to.body.connection)
  refusedNaming(await p.stack.api('PATCH', `/v1/servers/${s.body.id}`, { connection: { host: `-oProxyCommand=${evil}` } }), 'connection.host', 'a "-" host by PATCH')
  const back = await p.stack.api('PATCH', `/v1/servers/${s.body.id}`, { connection: { uri: 'qemu:///system', transport: null, host: null, keyFile: null } })
  assert.equal(back.status, 200, JSON.stringify(back.body))
  assert.deepEqual(back.body.connection, { uri: 'qemu:///system', domain: 'web-1' })
  nothingRan()
})

/** A loopback port nothing listens on (bound, then released). */
async function closedPort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise(resolve => s.close(resolve))
  return port
}
