/**
 * Kiosk pools (issue #10), through the real services (API, RabbitMQ, receiver, agents with the pool
 * controller, console gateway, Redis) and real libvirt with a qcow2 golden image made by `qemu-img`, each
 * figure beside a peer measured in the same run:
 *  1. `url`: a plain console URL (`POST /v1/servers/{id}/console`) for a running tiny domain, 1 client: the
 *     peer of the warm hand-out;
 *  2. `bare`: a clone made by hand, as the scripts pools replace did (`qemu-img create -b golden`,
 *     `virsh define`, `virsh start`): the peer of the refill;
 *  3. `warm`: the warm hand-out (`POST /v1/pools/{name}/sessions` → URL) p50 and p99 on a full pool; the
 *     refill per clone as the agents time it (`porthole_pool_refill_duration_seconds`: overlay → defined,
 *     started and ready), beside `bare`; and the wall clock from a session's revocation to the pool full again
 *     (disposal, then the refill: a slot is refilled once its clone is gone), read every 20 ms;
 *  4. `frame`: hand-out → first lit canvas frame of the console page in Chromium, beside the plain console
 *     URL → first lit frame;
 *  5. `cold`: the cold path: every clone in use, one visitor leaves, and a hand-out with `?wait=60` takes the
 *     clone made on demand in the freed slot (its disposal, overlay + define + start, the console).
 *
 *   npm run bench -- pool [--quick] [--only=url,bare,warm,frame,cold] [--json]
 *
 * Everything it starts (services, pools and their clones, domains, the golden image, Chromium) is removed on
 * the way out, also after a failure or on SIGINT/SIGTERM.
 */
import { bareClone, poolDomains, poolTemplate, removePoolLeftovers, sharedDir, startStack, testPoolName, tinyDomain, waitFor, TEST_LIBVIRT_URI, type Stack } from '@porthole/testkit'
import { FIRST_LIT_FRAME, launchChromium } from '@porthole/testkit/chromium'
import { loadavg } from 'node:os'
import { UNCAPPED, jsonClient, onlySections, percentile, table } from './stats.js'

const quick = process.argv.includes('--quick')
const SECTIONS = ['url', 'bare', 'warm', 'frame', 'cold'] as const
const only = onlySections(SECTIONS)
const json = process.argv.includes('--json')
const report = (text: string): void => { (json ? process.stderr : process.stdout).write(text + '\n') }
const t00 = performance.now()
const progress = (what: string): void => { process.stderr.write(`[pool bench +${((performance.now() - t00) / 1000).toFixed(1)} s] ${what}\n`) }
const cleanups: Array<() => Promise<void>> = []
const t = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }
let cleaning: Promise<void> | undefined
async function cleanUp (): Promise<void> {
  cleaning ??= (async () => { for (const fn of cleanups.splice(0).reverse()) await fn().catch((err: Error) => { progress(`clean-up step failed: ${err.message}`) }) })()
  await cleaning
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { void cleanUp().finally(() => process.exit(130)) })

const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b)
const p50 = (xs: number[]): number => percentile(sorted(xs), 50)
const p99 = (xs: number[]): number => percentile(sorted(xs), 99)
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
const RUNS = { url: quick ? 30 : 100, bare: quick ? 3 : 8, warm: quick ? 10 : 30, frame: quick ? 4 : 10, cold: quick ? 2 : 5 }

type Client = ReturnType<typeof jsonClient>

async function ok (c: Client, method: string, path: string, body?: unknown, want = [200, 201, 204]): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await c(method, path, body)
  if (!want.includes(r.status)) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

/** A pool of `size` on the golden template, full (every clone ready) before this returns; deleted at the end. */
async function fullPool (c: Client, tenantId: string, template: string, size: number): Promise<string> {
  const name = testPoolName()
  removePoolLeftovers(t, name)
  await ok(c, 'POST', '/v1/pools', { name, tenantId, template, size, idleTimeoutSeconds: 600, maxSessionSeconds: 3600 })
  t.after(async () => {
    await c('DELETE', `/v1/pools/${name}`)
    // The controller removes the clones after the answer: wait for libvirt to list none before the services stop.
    await waitFor(async () => (await poolDomains(name)).length === 0, 120_000, `pool ${name}'s clones to go`, 200)
  })
  await untilReady(c, name, size, 120_000)
  return name
}

/** Waits until the pool has `n` ready clones; returns when that was seen (ms, performance.now()). */
async function untilReady (c: Client, pool: string, n: number, timeoutMs = 60_000): Promise<number> {
  return await waitFor(async () => {
    const v = await ok(c, 'GET', `/v1/pools/${pool}`)
    return v.ready >= n ? performance.now() : undefined
  }, timeoutMs, `pool ${pool} to have ${n} ready`, 20)
}

/** The agents' refill histogram (`porthole_pool_refill_duration_seconds`, overlay → booted and ready): its sum and count over every pool. */
async function refillHistogram (stack: Stack): Promise<{ sum: number, count: number }> {
  const url = stack.metricsUrls.agents
  if (url === undefined) throw new Error('the agents named no metrics port')
  const text = await (await fetch(url)).text()
  const total = (suffix: string): number => text.split('\n').filter(l => l.startsWith(`porthole_pool_refill_duration_seconds_${suffix}{`)).reduce((a, l) => a + Number(l.split(' ').at(-1)), 0)
  return { sum: total('sum'), count: total('count') }
}

async function main (): Promise<void> {
  const needPools = only.has('warm') || only.has('frame') || only.has('cold')
  progress('starting the services')
  const golden = await poolTemplate(t)
  const overlays = await sharedDir(t, 'overlays')
  const stack: Stack = await startStack(t, {
    keepLogs: false,
    envFor: {
      receiver: UNCAPPED,
      agents: { AGENT_TYPES: 'kvm', POOL_OVERLAY_DIR: overlays, POOL_LIBVIRT_URI: TEST_LIBVIRT_URI }
    }
  })
  const c = jsonClient(stack.apiUrl, stack.adminToken)
  const tenant = await ok(c, 'POST', '/v1/tenants', { name: 'bench-pool' })
  const rows: Array<Record<string, string | number>> = []
  const row = (r: Record<string, string | number>): void => { rows.push(r); progress(`${String(r.what)}: p50 ${Number(r['p50 ms']).toFixed(1)} ms, p99 ${Number(r['p99 ms']).toFixed(1)} ms ${String(r.ratio)}`) }
  const figures: Record<string, number> = {}

  // 1. the peer of the hand-out: a plain console URL for a running VM.
  let urlP50 = NaN
  let serverId: string | undefined
  if (only.has('url') || only.has('frame') || only.has('warm')) {
    const dom = await tinyDomain(t)
    await dom.settled()
    const s = await ok(c, 'POST', '/v1/servers', { name: dom.name, tenantId: tenant.id, agent: 'kvm', connection: { uri: dom.uri, domain: dom.name } })
    serverId = s.id as string
  }
  const plainUrl = async (): Promise<{ sessionId: string, url: string }> => await ok(c, 'POST', `/v1/servers/${serverId ?? ''}/console`, { ttlSeconds: 600 })
  if (only.has('url')) {
    progress('1. plain console URL')
    const lat: number[] = []
    for (let i = 0; i < RUNS.url + 3; i++) {
      const t0 = performance.now()
      const g = await plainUrl()
      if (i >= 3) lat.push(performance.now() - t0)
      await ok(c, 'DELETE', `/v1/console-sessions/${g.sessionId}`)
    }
    urlP50 = p50(lat)
    figures.urlP50Ms = urlP50
    figures.urlP99Ms = p99(lat)
    row({ what: 'plain console URL (POST …/console), peer', runs: lat.length, 'p50 ms': urlP50, 'p99 ms': p99(lat), ratio: '' })
  }

  // 2. the peer of the refill: a clone made by hand.
  let bareP50 = NaN
  if (only.has('bare')) {
    progress('2. bare qemu-img + virsh define + virsh start')
    const runs = []
    for (let i = 0; i < RUNS.bare; i++) runs.push(await bareClone(t, golden))
    bareP50 = p50(runs.map(r => r.totalMs))
    figures.bareP50Ms = bareP50
    row({ what: `bare clone, peer (overlay ${p50(runs.map(r => r.overlayMs)).toFixed(1)} + define ${p50(runs.map(r => r.defineMs)).toFixed(1)} + start ${p50(runs.map(r => r.startMs)).toFixed(1)} ms)`, runs: runs.length, 'p50 ms': bareP50, 'p99 ms': p99(runs.map(r => r.totalMs)), ratio: '' })
  }

  if (needPools) {
    const size = 2
    const pool = await fullPool(c, tenant.id, golden.dom.name, size)
    const handOut = async (wait = 0): Promise<{ sessionId: string, url: string }> => await ok(c, 'POST', `/v1/pools/${pool}/sessions${wait > 0 ? `?wait=${wait}` : ''}`)

    if (only.has('warm')) {
      progress('3. warm hand-out and refill')
      const lat: number[] = []
      const cycle: number[] = []
      // The peers again, interleaved with the measured hand-outs: the same moment's load weighs on both.
      const urlPeer: number[] = []
      const barePeer: number[] = []
      await untilReady(c, pool, size)
      const h0 = await refillHistogram(stack)
      for (let i = 0; i < RUNS.warm + 2; i++) {
        await untilReady(c, pool, size)
        const t0 = performance.now()
        const g = await handOut()
        const t1 = performance.now()
        // Disposal (off the path) and then the slot's refill start now; the pool is full again after both.
        await ok(c, 'DELETE', `/v1/console-sessions/${g.sessionId}`)
        const full = await untilReady(c, pool, size, 120_000)
        if (i < 2) continue
        lat.push(t1 - t0)
        cycle.push(full - t1)
        if (serverId !== undefined) {
          const u0 = performance.now()
          const p = await plainUrl()
          urlPeer.push(performance.now() - u0)
          await ok(c, 'DELETE', `/v1/console-sessions/${p.sessionId}`)
        }
        if (i % 3 === 2) {
          const own: Array<() => Promise<void>> = []
          barePeer.push((await bareClone({ after: fn => { own.push(fn) } }, golden, overlays)).totalMs)
          for (const fn of own.reverse()) await fn() // removed at once: a running peer would load the next rounds
        }
      }
      const h1 = await refillHistogram(stack)
      const refillMean = (h1.sum - h0.sum) * 1000 / Math.max(1, h1.count - h0.count)
      figures.warmP50Ms = p50(lat)
      figures.warmP99Ms = p99(lat)
      figures.refillMeanMs = refillMean
      figures.disposeAndRefillP50Ms = p50(cycle)
      figures.urlInterleavedP50Ms = p50(urlPeer)
      figures.bareInterleavedMeanMs = mean(barePeer)
      row({ what: 'plain console URL, interleaved with the hand-outs, peer', runs: urlPeer.length, 'p50 ms': p50(urlPeer), 'p99 ms': p99(urlPeer), ratio: '' })
      row({ what: 'warm hand-out (POST /v1/pools/{name}/sessions → URL)', runs: lat.length, 'p50 ms': p50(lat), 'p99 ms': p99(lat), ratio: urlPeer.length === 0 ? '' : `${(p50(lat) / p50(urlPeer)).toFixed(2)}× plain URL` })
      row({ what: 'bare clone, interleaved with the refills, peer (mean)', runs: barePeer.length, 'p50 ms': mean(barePeer), 'p99 ms': NaN, ratio: '' })
      row({ what: "refill per clone, overlay → booted and ready (agents' histogram, mean)", runs: h1.count - h0.count, 'p50 ms': refillMean, 'p99 ms': NaN, ratio: `${(refillMean / mean(barePeer)).toFixed(2)}× bare` })
      row({ what: 'revoked → disposed → refilled → pool full again (wall clock)', runs: cycle.length, 'p50 ms': p50(cycle), 'p99 ms': p99(cycle), ratio: '' })
    }

    if (only.has('frame')) {
      progress('4. hand-out → first lit frame in Chromium')
      const browser = await launchChromium(t, { width: 1280, height: 800 })
      const toFrame = async (get: () => Promise<{ sessionId: string, url: string }>): Promise<number> => {
        const page = await browser.newPage()
        try {
          const t0 = Date.now()
          const g = await get()
          await page.goto(g.url, { waitUntil: 'commit' })
          const r = await page.evaluate(FIRST_LIT_FRAME) as { at: number }
          await page.close()
          await ok(c, 'DELETE', `/v1/console-sessions/${g.sessionId}`)
          return r.at - t0
        } finally { await page.close().catch(() => {}) }
      }
      const fromPool: number[] = []
      const fromUrl: number[] = []
      for (let i = 0; i < RUNS.frame + 1; i++) {
        await untilReady(c, pool, size)
        const a = await toFrame(async () => await handOut())
        const b = await toFrame(plainUrl)
        if (i >= 1) { fromPool.push(a); fromUrl.push(b) } // the first warms the page's cache
      }
      figures.handoutToFrameP50Ms = p50(fromPool)
      row({ what: 'plain console URL → first lit frame, peer', runs: fromUrl.length, 'p50 ms': p50(fromUrl), 'p99 ms': p99(fromUrl), ratio: '' })
      row({ what: 'hand-out → first lit frame (Chromium, 1280×800)', runs: fromPool.length, 'p50 ms': p50(fromPool), 'p99 ms': p99(fromPool), ratio: `${(p50(fromPool) / p50(fromUrl)).toFixed(2)}× plain URL` })
    }

    if (only.has('cold')) {
      progress('5. the cold path')
      const lat: number[] = []
      for (let i = 0; i < RUNS.cold; i++) {
        await untilReady(c, pool, size)
        const held = [await handOut(), await handOut()] // every clone in use: none ready
        // One visitor leaves: its slot is disposed of and refilled, and the waiting hand-out takes that clone.
        await ok(c, 'DELETE', `/v1/console-sessions/${held[0]?.sessionId ?? ''}`)
        const t0 = performance.now()
        const g = await handOut(60)
        lat.push(performance.now() - t0)
        for (const s of [held[1], g]) await ok(c, 'DELETE', `/v1/console-sessions/${s?.sessionId ?? ''}`)
      }
      figures.coldP50Ms = p50(lat)
      row({ what: 'cold hand-out (none ready, ?wait=60: disposal of the freed slot + overlay + define + start + console)', runs: lat.length, 'p50 ms': p50(lat), 'p99 ms': p99(lat), ratio: Number.isNaN(bareP50) ? '' : `${(p50(lat) / bareP50).toFixed(2)}× bare` })
    }
  }

  report(`pool bench, ${new Date().toISOString()}${quick ? ' (quick)' : ''}, sections: ${[...only].join(', ')}, load average ${loadavg().map(l => l.toFixed(1)).join(' ')}\n`)
  report(table(rows))
  report('\nAims (issue #10): warm hand-out p50 ≤ 50 ms and ≤ 2× a plain console URL; refill per clone ≤ 1.5× a bare clone.')
  if (json) process.stdout.write(JSON.stringify(figures) + '\n')
}

try {
  await main()
} finally {
  await cleanUp()
}
