import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { waitFor } from '@porthole/testkit'
import { createOvirtDriver } from '../../src/ovirt/index.js'
import { agentContext, rejectsWith } from '../context.js'
import { makePki, startOvirtSimulator, type OvirtSimulator } from '@porthole/testkit/ovirt'

function ctxFor (sim: Pick<OvirtSimulator, 'url' | 'username' | 'password'>, vmId: string, o: { caCert?: string | null, password?: string, deadlineMs?: number, lines?: string[], ttlSeconds?: number } = {}) {
  const connection: Record<string, unknown> = { url: sim.url, username: sim.username, vmId }
  if (o.caCert !== null && o.caCert !== undefined) connection.caCert = o.caCert
  return agentContext({ agent: 'ovirt', connection, secrets: { connection: { password: o.password ?? sim.password } }, deadlineMs: o.deadlineMs, lines: o.lines, ttlSeconds: o.ttlSeconds })
}

const statuses = (sim: OvirtSimulator, id: string): string[] => sim.vm(id)!.history.map(h => h.status)

test('every action moves the simulated VM as the engine would', async (t) => {
  const sim = await startOvirtSimulator(t, { transitionMs: 150 })
  const d = createOvirtDriver({ pollIntervalMs: 50 })
  t.after(() => d.close())
  const vm = sim.addVm({ status: 'down' })
  const ctx = ctxFor(sim, vm.id, { caCert: sim.caCert, deadlineMs: 20_000 })
  const up = async (): Promise<void> => { await waitFor(() => sim.vm(vm.id)!.status === 'up', 5000, 'VM up') }

  assert.equal((await d.status(ctx)).power, 'off')

  const on = await d.power(ctx, 'on')
  assert.deepEqual([on.power, on.changed], ['on', true])
  assert.ok(['powering_up', 'up'].includes(sim.vm(vm.id)!.status))
  assert.deepEqual(statuses(sim, vm.id).slice(0, 3), ['down', 'wait_for_launch', 'powering_up'])
  await up()

  const again = await d.power(ctx, 'on')
  assert.deepEqual([again.power, again.changed, again.detail], ['on', false, 'vm status: up'])

  const reboot = await d.power(ctx, 'reboot')
  assert.deepEqual([reboot.power, reboot.changed], ['on', true])
  assert.ok(statuses(sim, vm.id).includes('reboot_in_progress'))
  await up()

  const suspend = await d.power(ctx, 'suspend')
  assert.deepEqual([suspend.power, suspend.changed], ['paused', true])
  assert.equal(sim.vm(vm.id)!.status, 'suspended')

  const resume = await d.power(ctx, 'resume')
  assert.deepEqual([resume.power, resume.changed], ['on', true])
  assert.ok(statuses(sim, vm.id).includes('restoring_state'))
  await up()

  const shutdown = await d.power(ctx, 'shutdown')
  assert.deepEqual([shutdown.power, shutdown.changed], ['off', true])
  assert.equal(sim.vm(vm.id)!.status, 'down')
  assert.ok(statuses(sim, vm.id).includes('powering_down'), 'a graceful shutdown, not a stop')

  await rejectsWith(d.power(ctx, 'resume'), 'conflict')

  const reset = await d.power(ctx, 'reset')
  assert.deepEqual([reset.power, reset.detail], ['on', 'was down: started'])
  await up()

  const mark = sim.vm(vm.id)!.history.length
  const reset2 = await d.power(ctx, 'reset')
  assert.deepEqual([reset2.power, reset2.changed, reset2.detail], ['on', true, 'reset as stop and start'])
  assert.deepEqual(statuses(sim, vm.id).slice(mark, mark + 2), ['down', 'wait_for_launch'], 'reset is a stop, then a start')
  await up()

  const off = await d.power(ctx, 'off')
  assert.deepEqual([off.power, off.changed], ['off', true])
  assert.equal(sim.vm(vm.id)!.status, 'down')
  assert.equal((await d.power(ctx, 'off')).changed, false)

  const actions = sim.requests.filter(r => r.method === 'POST' && r.path.includes('/api/')).map(r => r.path.split('/').pop())
  assert.deepEqual(actions, ['start', 'reboot', 'suspend', 'start', 'shutdown', 'start', 'stop', 'start', 'stop'])
  assert.equal(sim.tokensIssued(), 1, 'one token served every call')
  assert.ok(!ctx.lines.join('').includes(sim.password))
})

test('a token is renewed when it expires and after a 401', async (t) => {
  const sim = await startOvirtSimulator(t, { tokenLifetimeMs: 1500 })
  const d = createOvirtDriver()
  t.after(() => d.close())
  const vm = sim.addVm({ status: 'up' })
  const ctx = ctxFor(sim, vm.id, { caCert: sim.caCert })
  assert.equal((await d.status(ctx)).power, 'on')
  assert.equal((await d.status(ctx)).power, 'on')
  assert.equal(sim.tokensIssued(), 1)
  await waitFor(() => sim.liveTokens() === 0, 10_000, 'the first token to expire at the engine')
  assert.equal((await d.status(ctx)).power, 'on')
  assert.equal(sim.tokensIssued(), 2, 'renewed at expiry')
  assert.equal(sim.requests.filter(r => r.status === 401).length, 0, 'before the engine had to refuse it')

  sim.revokeTokens()
  assert.equal((await d.status(ctx)).power, 'on')
  assert.equal(sim.tokensIssued(), 3, 'renewed after a 401')
  assert.equal(sim.requests.filter(r => r.status === 401).length, 1)
})

test('wrong credentials are an auth error', async (t) => {
  const sim = await startOvirtSimulator(t)
  const d = createOvirtDriver()
  t.after(() => d.close())
  const vm = sim.addVm({ status: 'down' })
  const ctx = ctxFor(sim, vm.id, { caCert: sim.caCert, password: 'wrong-password' })
  const err = await rejectsWith(d.power(ctx, 'on'), 'auth')
  assert.equal(err.retryable, false)
  assert.ok(!err.message.includes('wrong-password'))
  assert.equal(sim.vm(vm.id)!.status, 'down')
})

test('the engine CA from the record is trusted; any other certificate is refused', async (t) => {
  const sim = await startOvirtSimulator(t)
  const d = createOvirtDriver()
  t.after(() => d.close())
  const vm = sim.addVm({ status: 'up' })
  assert.equal((await d.status(ctxFor(sim, vm.id, { caCert: sim.caCert }))).power, 'on')

  const other = await makePki(t)
  const wrongCa = await rejectsWith(d.status(ctxFor(sim, vm.id, { caCert: other.caCert })), 'connection')
  assert.equal(wrongCa.retryable, false)
  assert.match(wrongCa.message, /TLS/)
  await rejectsWith(d.status(ctxFor(sim, vm.id, { caCert: null })), 'connection')
  assert.equal(sim.tokensIssued(), 1, 'no credentials were sent to an untrusted server')
})

test('an engine that does not listen is a connection error', async (t) => {
  const srv = createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', () => resolve()))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>(resolve => srv.close(() => resolve()))
  const d = createOvirtDriver()
  t.after(() => d.close())
  const err = await rejectsWith(d.status(ctxFor({ url: `https://127.0.0.1:${port}/ovirt-engine`, username: 'u', password: 'p' }, 'x')), 'connection')
  assert.equal(err.retryable, true)
})

test('a locked VM is a conflict and an unknown VM is not found', async (t) => {
  const sim = await startOvirtSimulator(t)
  const d = createOvirtDriver()
  t.after(() => d.close())
  const locked = sim.addVm({ status: 'image_locked' })
  const status = await d.status(ctxFor(sim, locked.id, { caCert: sim.caCert }))
  assert.deepEqual([status.power, status.detail], ['unknown', 'vm status: image_locked'])
  const err = await rejectsWith(d.power(ctxFor(sim, locked.id, { caCert: sim.caCert }), 'on'), 'conflict')
  assert.match(err.message, /VM is locked/)
  assert.equal(sim.vm(locked.id)!.status, 'image_locked')

  await rejectsWith(d.status(ctxFor(sim, '0f0f0f0f-0000-4000-8000-000000000000', { caCert: sim.caCert })), 'not_found')
  await rejectsWith(d.power(ctxFor(sim, '0f0f0f0f-0000-4000-8000-000000000000', { caCert: sim.caCert }), 'off'), 'not_found')
})

test('the console target is the VNC console with a fresh ticket as its password', async (t) => {
  const sim = await startOvirtSimulator(t)
  const d = createOvirtDriver({ ticketSeconds: 900 })
  t.after(() => d.close())
  const vm = sim.addVm({ status: 'up', consoles: [
    { id: 'spice-1', protocol: 'spice', address: '192.0.2.20', port: 5910 },
    { id: 'vnc-1', protocol: 'vnc', address: '192.0.2.21', port: 5911, tlsPort: 5912 }
  ] })
  const lines: string[] = []
  const target = await d.consoleTarget(ctxFor(sim, vm.id, { caCert: sim.caCert, lines }), 'vnc')
  assert.equal(sim.tickets.length, 1)
  const ticket = sim.tickets[0]!
  assert.deepEqual(ticket.consoleId, 'vnc-1')
  assert.equal(ticket.expiry, 900, 'asked for the expiry it needs')
  assert.deepEqual(target, { kind: 'vnc', host: '192.0.2.21', port: 5911, password: ticket.value.slice(0, 8) })
  // A session shorter than the setting gets a ticket that ends with it.
  await d.consoleTarget(ctxFor(sim, vm.id, { caCert: sim.caCert, ttlSeconds: 300 }), 'vnc')
  assert.equal(sim.tickets[1]?.expiry, 300)
  sim.tickets.pop()
  assert.ok(!lines.join('').includes(ticket.value.slice(0, 8)), 'the ticket is in no log line')

  const down = sim.addVm({ status: 'down' })
  await rejectsWith(d.consoleTarget(ctxFor(sim, down.id, { caCert: sim.caCert }), 'vnc'), 'conflict')
  const none = sim.addVm({ status: 'up', consoles: [] })
  const err = await rejectsWith(d.consoleTarget(ctxFor(sim, none.id, { caCert: sim.caCert }), 'vnc'), 'conflict')
  assert.match(err.message, /no graphics console/)
  assert.equal(sim.tickets.length, 1)
})
