/** Kiosk pool fixtures for end-to-end tests: pools made and deleted through the public API, read back from libvirt. */
import assert from 'node:assert/strict'
import { after } from 'node:test'
import { hooksDir, poolDomains, poolOverlays, poolTemplate, removePoolLeftovers, sharedDir, testPoolName, virsh, waitFor, type PoolTemplate, type Scope, type Stack } from '@porthole/testkit'
import { consoleAddress, vncViewer, type LiveViewer } from '../security/support.js'
import { fileStack, tenant, type Tenancy } from './fixtures.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read bodies of every shape
type Body = any

export interface PoolKit {
  stack: Stack
  overlays: string
  hookOut: string
  acme: Tenancy
  other: Tenancy
  /** A pool on a fresh template, deleted (and waited for) at the test's end; leftovers removed whatever happens. */
  pool: (t: Scope, o: { size: number, hooks?: string[], idleTimeoutSeconds?: number }) => Promise<{ name: string, template: PoolTemplate, view: Body }>
  deletePool: (name: string) => Promise<void>
  /** The pool's view once `ready` clones are ready and none is starting. */
  readyPool: (name: string, ready: number) => Promise<Body>
  handOut: (name: string, key: string) => Promise<{ status: number, body: Body, headers: Headers }>
  /** A live VNC viewer of a console URL, up to the VM's ServerInit; terminated at the test's end. */
  live: (t: Scope, url: string) => Promise<LiveViewer>
}

/** Whether libvirt still defines the domain. */
export async function defined (name: string): Promise<boolean> {
  return (await virsh('list', '--all', '--name')).split('\n').map(l => l.trim()).includes(name)
}

/**
 * One stack for a test file whose agents keep pools: overlay and hooks directories of its own (hooks: `record`
 * writes its environment to hookOut, `fail` exits 3, `hang` sleeps, `slow` sleeps 2 s), short reconcile, grace
 * and hook timeout.
 */
export async function poolKit (): Promise<PoolKit> {
  const fileScope: Scope = { after: (fn) => after(fn) }
  const overlays = await sharedDir(fileScope, 'overlays')
  const hookOut = await sharedDir(fileScope, 'hook-out')
  const hooks = await hooksDir(fileScope, {
    record: `echo "$PORTHOLE_POOL $PORTHOLE_CLONE $PORTHOLE_SLOT $PORTHOLE_MACS $PORTHOLE_OVERLAY" > "${hookOut}/$PORTHOLE_CLONE"`,
    fail: 'echo "no seed for you" >&2; exit 3',
    hang: 'sleep 600',
    slow: 'sleep 2'
  })
  const stack = await fileStack({
    envFor: {
      agents: { POOL_OVERLAY_DIR: overlays, POOL_HOOKS_DIR: hooks, POOL_HOOK_TIMEOUT_SECONDS: '5', POOL_RECONCILE_SECONDS: '2', POOL_DISCONNECT_GRACE_SECONDS: '2', POOL_CLAIM_TIMEOUT_SECONDS: '20' }
    }
  })
  const acme = await tenant(stack, 'pools-acme')
  const other = await tenant(stack, 'pools-other')

  async function deletePool (name: string): Promise<void> {
    const r = await stack.api('DELETE', `/v1/pools/${name}`)
    assert.ok(r.status === 204 || r.status === 404, JSON.stringify(r.body))
    await waitFor(async () => (await stack.api('GET', `/v1/pools/${name}`)).status === 404, 90_000, `pool ${name} to be gone`, 200)
    await waitFor(async () => (await poolDomains(name)).length === 0, 60_000, `pool ${name}'s domains to be gone`, 200)
    assert.deepEqual(await poolOverlays(overlays, name), [], 'no overlay of a deleted pool is left')
  }

  return {
    stack,
    overlays,
    hookOut,
    acme,
    other,
    deletePool,
    async pool (t, o) {
      const template = await poolTemplate(t)
      const name = testPoolName()
      removePoolLeftovers(t, name)
      const r = await stack.api('POST', '/v1/pools', { name, tenantId: acme.tenantId, template: template.dom.name, size: o.size, ...(o.hooks === undefined ? {} : { hooks: o.hooks }), ...(o.idleTimeoutSeconds === undefined ? {} : { idleTimeoutSeconds: o.idleTimeoutSeconds }) })
      assert.equal(r.status, 201, JSON.stringify(r.body))
      t.after(async () => { await deletePool(name) })
      return { name, template, view: r.body }
    },
    async readyPool (name, ready) {
      return await waitFor(async () => {
        const r = await stack.api('GET', `/v1/pools/${name}`)
        return r.status === 200 && r.body.ready === ready && r.body.starting === 0 ? r.body : undefined
      }, 120_000, `pool ${name} to have ${ready} ready clones`, 200)
    },
    async handOut (name, key) {
      return await stack.api('POST', `/v1/pools/${name}/sessions`, undefined, { key })
    },
    async live (t, url) {
      const v = await vncViewer(consoleAddress(url))
      t.after(async () => { v.ws.terminate() })
      return v
    }
  }
}
