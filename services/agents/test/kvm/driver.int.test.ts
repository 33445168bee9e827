import { after, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createServer, type Socket } from 'node:net'
import type { PowerStatus, StoredKvmServer } from '@porthole/contracts'
import { PortholeError } from '@porthole/contracts/errors'
import { createLogger } from '@porthole/shared/logging'
import { TEST_LIBVIRT_URI, tinyDomain, virsh, waitFor, within } from '@porthole/testkit'
import { KvmDriver } from '../../src/kvm/driver.js'
import { testJob, type TestCtx, type TestJob } from '../context.js'

const SHUTDOWN_WAIT_MS = 1500
const driver = new KvmDriver({ consoleHosts: {}, shutdownWaitMs: SHUTDOWN_WAIT_MS, pollMs: 100 })
after(async () => await driver.close())
const log = createLogger({ name: 'test', level: 'silent' })

function ctx (domain: string, o: { uri?: string, deadlineMs?: number } = {}): Omit<TestCtx<StoredKvmServer>, 'lines'> {
  const now = new Date().toISOString()
  const server: StoredKvmServer = {
    id: randomUUID(), tenantId: randomUUID(), name: domain, agent: 'kvm',
    connection: { uri: o.uri ?? TEST_LIBVIRT_URI, domain }, secretPaths: [], createdAt: now, updatedAt: now
  }
  const deadline = new Date(Date.now() + (o.deadlineMs ?? 20_000))
  return { job: testJob(server, deadline.getTime() - Date.now()) as unknown as TestJob, server, secrets: {}, signal: AbortSignal.timeout(deadline.getTime() - Date.now()), deadline, log }
}

async function code (p: Promise<unknown>): Promise<string> {
  try { await p } catch (err) { assert.ok(err instanceof PortholeError, `expected a PortholeError, got ${String(err)}`); return err.code }
  assert.fail('expected a failure')
}

test('status reports what libvirt reports: on, paused, off', async (t) => {
  const vm = await tinyDomain(t)
  assert.equal((await driver.status(ctx(vm.name))).power, 'on')
  await virsh('suspend', vm.name)
  assert.equal(await vm.state(), 'paused')
  assert.equal((await driver.status(ctx(vm.name))).power, 'paused')
  await virsh('destroy', vm.name)
  assert.equal(await vm.state(), 'shut off')
  const before = Date.now()
  const s = await driver.status(ctx(vm.name))
  assert.equal(s.power, 'off')
  assert.ok(Date.parse(s.checkedAt) >= before && Date.parse(s.checkedAt) <= Date.now(), `checkedAt ${s.checkedAt} is the time of the call`)
})

test('on does not restart a running VM; off stops it; on starts it again', async (t) => {
  const vm = await tinyDomain(t)
  const id = await virsh('domid', vm.name)
  const on = await driver.power(ctx(vm.name), 'on')
  assert.deepEqual([on.power, on.changed], ['on', false])
  assert.equal(await virsh('domid', vm.name), id, 'the domain id changed: "on" restarted a running VM')

  const off = await driver.power(ctx(vm.name), 'off')
  assert.deepEqual([off.power, off.changed], ['off', true])
  assert.equal(await vm.state(), 'shut off')
  const again = await driver.power(ctx(vm.name), 'off')
  assert.deepEqual([again.power, again.changed], ['off', false])

  const started = await driver.power(ctx(vm.name), 'on')
  assert.deepEqual([started.power, started.changed], ['on', true])
  assert.equal(await vm.state(), 'running')
})

test('suspend pauses and resume continues; both are no-ops when already there', async (t) => {
  const vm = await tinyDomain(t)
  const s = await driver.power(ctx(vm.name), 'suspend')
  assert.deepEqual([s.power, s.changed], ['paused', true])
  assert.equal(await vm.state(), 'paused')
  assert.equal((await driver.power(ctx(vm.name), 'suspend')).changed, false)

  const r = await driver.power(ctx(vm.name), 'resume')
  assert.deepEqual([r.power, r.changed], ['on', true])
  assert.equal(await vm.state(), 'running')
  assert.equal((await driver.power(ctx(vm.name), 'resume')).changed, false)
  assert.equal(await vm.state(), 'running')
})

test('suspend of a VM that is off is a conflict', async (t) => {
  const vm = await tinyDomain(t, { start: false })
  assert.equal(await code(driver.power(ctx(vm.name), 'suspend')), 'conflict')
  assert.equal(await vm.state(), 'shut off')
})

/** Runs `action` on a running VM and checks, with libvirt, that it was power-cycled: running again, with a new domain id. */
async function powerCycles (t: TestContext, action: 'reset' | 'reboot'): Promise<PowerStatus> {
  const vm = await tinyDomain(t)
  const id = await virsh('domid', vm.name)
  const r = await driver.power(ctx(vm.name), action)
  assert.deepEqual([r.power, r.changed], ['on', true])
  assert.equal(await vm.state(), 'running')
  assert.notEqual(await virsh('domid', vm.name), id)
  return r
}

test('reset power-cycles the VM: it runs with a new domain id', async (t) => {
  await powerCycles(t, 'reset')
})

test('shutdown of a guest that ignores ACPI fails with timeout after the wait and leaves it running', async (t) => {
  const vm = await tinyDomain(t)
  const started = Date.now()
  // A deadline far beyond the wait: only the wait can end this within the bound.
  const err = await within(driver.power(ctx(vm.name, { deadlineMs: 90_000 }), 'shutdown').then(() => undefined, (e: unknown) => e), 45_000, `the shutdown to give up after its ${SHUTDOWN_WAIT_MS} ms wait`)
  assert.ok(err instanceof PortholeError)
  assert.equal(err.code, 'timeout')
  assert.equal(err.retryable, true)
  assert.match(err.message, /did not power off after the ACPI request/)
  // A configured minimum, which a slower machine only lengthens: it did wait.
  assert.ok(Date.now() - started >= SHUTDOWN_WAIT_MS - 100, `gave up after ${Date.now() - started} ms`)
  assert.equal(await vm.state(), 'running')
})

test('shutdown is bounded by the deadline when the deadline comes before the wait', async (t) => {
  const slow = new KvmDriver({ consoleHosts: {}, shutdownWaitMs: 60_000, pollMs: 100 })
  t.after(async () => await slow.close())
  const vm = await tinyDomain(t)
  // The 60 s wait cannot end this within the bound: only the 2 s deadline can.
  assert.equal(await within(code(slow.power(ctx(vm.name, { deadlineMs: 2000 }), 'shutdown')), 30_000, 'the shutdown to end at its 2 s deadline'), 'timeout')
  assert.equal(await vm.state(), 'running')
})

test('reboot of a guest that ignores ACPI escalates to a hard power cycle and says so', async (t) => {
  const r = await powerCycles(t, 'reboot')
  assert.match(r.detail ?? '', /ignored the ACPI request/)
})

test('consoleTarget returns the VNC port libvirt shows and the password', async (t) => {
  const vm = await tinyDomain(t, { vncPassword: 'pw1x2y3z' })
  const port = await vm.vncPort()
  assert.ok(port !== undefined)
  const target = await driver.consoleTarget(ctx(vm.name), 'vnc')
  assert.deepEqual(target, { kind: 'vnc', host: '127.0.0.1', port, password: 'pw1x2y3z' })
})

test('consoleTarget maps a wildcard listen through KVM_CONSOLE_HOSTS', async (t) => {
  const mapped = new KvmDriver({ consoleHosts: { [TEST_LIBVIRT_URI]: 'vmhost.example' }, shutdownWaitMs: 1000 })
  t.after(async () => await mapped.close())
  const vm = await tinyDomain(t, { listen: '0.0.0.0' })
  const target = await mapped.consoleTarget(ctx(vm.name), 'guacamole')
  assert.deepEqual(target, { kind: 'vnc', host: 'vmhost.example', port: await vm.vncPort() })
})

test('consoleTarget of a VM that is off, or has no VNC display, is a conflict', async (t) => {
  const off = await tinyDomain(t, { start: false })
  assert.equal(await code(driver.consoleTarget(ctx(off.name), 'vnc')), 'conflict')
  const headless = await tinyDomain(t, { vnc: false })
  assert.equal(await code(driver.consoleTarget(ctx(headless.name), 'vnc')), 'conflict')
})

test('a domain can be named by UUID; an unknown domain is not_found', async (t) => {
  const vm = await tinyDomain(t, { start: false })
  const uuid = await virsh('domuuid', vm.name)
  assert.equal((await driver.status(ctx(uuid))).power, 'off')
  assert.equal(await code(driver.status(ctx(`porthole-missing-${randomUUID()}`))), 'not_found')
  assert.equal(await code(driver.power(ctx(randomUUID()), 'on')), 'not_found')
})

test('a libvirt URI nobody answers at fails with connection within the deadline', async () => {
  // "connection", not "timeout": the refusal ended it, not the deadline.
  assert.equal(await within(code(driver.power(ctx('any', { uri: 'qemu+tcp://127.0.0.1:1/system', deadlineMs: 3000 }), 'on')), 30_000, 'the refused connection to fail the job'), 'connection')
})

test('a libvirt endpoint that accepts and never answers fails with timeout at the deadline, not a hang', async (t) => {
  const sockets = new Set<Socket>()
  const silent = createServer(s => { sockets.add(s); s.on('error', () => {}) })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.after(async () => {
    for (const s of sockets) s.destroy() // frees the binding's blocked thread
    await new Promise(resolve => silent.close(resolve))
  })
  const port = (silent.address() as { port: number }).port
  assert.equal(await within(code(driver.status(ctx('any', { uri: `qemu+tcp://127.0.0.1:${port}/system`, deadlineMs: 1500 }))), 30_000, 'the status to end at its 1.5 s deadline'), 'timeout')
})

test('concurrent jobs on one URI share a few libvirt connections, as libvirtd itself counts them', async (t) => {
  const vm = await tinyDomain(t)
  // libvirtd's own list of this process's connections, by client id (other processes may be its clients too,
  // and a connection of an earlier test of this file may still be closing: only the ids this driver opened count).
  const mine = async (): Promise<Set<string>> => {
    const ids = (await virtAdmin('srv-clients-list', 'libvirtd')).split('\n').filter(l => /^\s*\d+\s/.test(l)).map(l => l.trim().split(/\s+/)[0] as string)
    const out = new Set<string>()
    for (const id of ids) {
      const info = await virtAdmin('client-info', 'libvirtd', id).catch(() => '')
      if (new RegExp(`unix_process_id\\s*:\\s*${process.pid}\\b`).test(info)) out.add(id)
    }
    return out
  }
  const pooled = new KvmDriver({ consoleHosts: {}, shutdownWaitMs: 1000, pollMs: 100, connectionsPerUri: 3 })
  t.after(async () => await pooled.close())
  const before = await mine()
  const opened = async (): Promise<string[]> => [...await mine()].filter(id => !before.has(id)).sort()
  await Promise.all(Array.from({ length: 9 }, async () => await pooled.status(ctx(vm.name))))
  const first = await opened()
  assert.equal(first.length, 3, `nine concurrent jobs, three connections: ${first.join(', ')}`)
  await Promise.all(Array.from({ length: 9 }, async () => await pooled.status(ctx(vm.name))))
  assert.deepEqual(await opened(), first, 'connections are reused, not reopened')
  await pooled.close()
  // Each look asks libvirtd about every client it has, so a busy machine makes a look slow: a generous bound.
  await waitFor(async () => { const now = await mine(); return first.every(id => !now.has(id)) }, 60_000, "the driver's connections to close")
})

async function virtAdmin (...args: string[]): Promise<string> {
  const { execFile } = await import('node:child_process')
  const { promisify } = await import('node:util')
  return (await promisify(execFile)('virt-admin', args)).stdout
}
