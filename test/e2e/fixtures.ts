/** Fixtures for end-to-end tests: tenants, keys and servers made through the public API only. */
import assert from 'node:assert/strict'
import { after } from 'node:test'
import { startStack, waitFor, type Stack, type StackOptions, type TinyDomain } from '@porthole/testkit'

/** One stack for a whole test file, stopped after the file's tests. */
export async function fileStack (o: StackOptions = {}): Promise<Stack> {
  return await startStack({ after: (fn) => after(fn) }, o)
}

export interface Tenancy { tenantId: string, customerKey: string }

export async function tenant (stack: Stack, name = 'acme'): Promise<Tenancy> {
  const t = await stack.api('POST', '/v1/tenants', { name })
  assert.equal(t.status, 201, JSON.stringify(t.body))
  const k = await stack.api('POST', '/v1/api-keys', { tenantId: t.body.id, role: 'customer', name: `${name}-portal` })
  assert.equal(k.status, 201, JSON.stringify(k.body))
  return { tenantId: t.body.id, customerKey: k.body.key }
}

export async function kvmServer (stack: Stack, tenantId: string, dom: { uri: string, name: string }): Promise<string> {
  const r = await stack.api('POST', '/v1/servers', { name: dom.name, tenantId, agent: 'kvm', connection: { uri: dom.uri, domain: dom.name } })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  return r.body.id as string
}

const TERMINAL = new Set(['succeeded', 'failed', 'timed_out'])

/** Polls a job until it is terminal. */
export async function finished (stack: Stack, jobId: string, key?: string, timeoutMs = 60_000): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return await waitFor(async () => {
    const r = await stack.api('GET', `/v1/jobs/${jobId}`, undefined, { key })
    return r.status === 200 && TERMINAL.has(r.body.state) ? r.body : undefined
  }, timeoutMs, `job ${jobId} to finish`, 50)
}

/** Runs a power action through the API, waiting for the job to end. */
export async function power (stack: Stack, serverId: string, action: string, key?: string): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await stack.api('POST', `/v1/servers/${serverId}/power?wait=30`, { action }, { key })
  assert.ok(r.status === 200 || r.status === 202, `power ${action}: ${r.status} ${JSON.stringify(r.body)}`)
  return TERMINAL.has(r.body.state) ? r.body : await finished(stack, r.body.id, key)
}

/** libvirt's numeric id of a running domain (changes when the domain is started again). */
export async function domId (dom: TinyDomain): Promise<string> {
  const { virsh } = await import('@porthole/testkit')
  return await virsh('domid', dom.name)
}
