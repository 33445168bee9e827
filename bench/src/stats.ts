/** Latency statistics and a plain table for benchmark output. */
import http from 'node:http'

/**
 * Receiver settings for benchmarks of the pipeline's own speed: their many clients stand for many tenants, so
 * the per-tenant caps (which fair-share.ts measures) are lifted.
 */
export const UNCAPPED = { TENANT_MAX_IN_FLIGHT: '100000', TENANT_MAX_POWER_IN_FLIGHT: '100000' }
export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i] as number
}

export interface Summary { n: number, seconds: number, perSecond: number, p50: number, p99: number, max: number }

export function summarize (latenciesMs: number[], seconds: number): Summary {
  const s = [...latenciesMs].sort((a, b) => a - b)
  return { n: s.length, seconds, perSecond: s.length / seconds, p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN }
}

/** Runs `fn` from `concurrency` clients until `total` calls are done; returns each call's latency in ms. */
export async function closedLoop (concurrency: number, total: number, fn: (i: number) => Promise<void>): Promise<Summary> {
  const lat: number[] = []
  let next = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < total; i = next++) {
      const s = performance.now()
      await fn(i)
      lat.push(performance.now() - s)
    }
  }))
  return summarize(lat, (performance.now() - t0) / 1000)
}

export function table (rows: Array<Record<string, string | number>>): string {
  if (rows.length === 0) return ''
  const cols = Object.keys(rows[0] as object)
  const cell = (v: string | number | undefined): string => typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : String(v ?? '')
  const width = cols.map(c => Math.max(c.length, ...rows.map(r => cell(r[c]).length)))
  const line = (vals: string[]): string => vals.map((v, i) => v.padStart(width[i] as number)).join('  ')
  return [line(cols), line(width.map(w => '-'.repeat(w))), ...rows.map(r => line(cols.map(c => cell(r[c]))))].join('\n')
}

/**
 * A lean JSON client for the measured loops: node:http with kept-alive connections. fetch (undici) costs the
 * benchmark process about 1 ms of CPU per call here, which on a small machine is taken from the services
 * being measured; a portal's backend would be on another machine.
 */
export function jsonClient (baseUrl: string, token: string, maxSockets = 64): (method: string, path: string, body?: unknown) => Promise<{ status: number, body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const agent = new http.Agent({ keepAlive: true, maxSockets })
  const base = new URL(baseUrl)
  return async (method, path, body) => await new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const req = http.request({
      host: base.hostname,
      port: base.port,
      method,
      path,
      agent,
      headers: { authorization: `Bearer ${token}`, ...(data === undefined ? {} : { 'content-type': 'application/json', 'content-length': data.length }) }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let parsed: unknown = text
        try { parsed = text === '' ? undefined : JSON.parse(text) } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, body: parsed })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(data)
  })
}

/** The sections `--only=` names (all when absent); an unknown name stops the bench before anything starts. */
export function onlySections<S extends string> (sections: readonly S[], argv: readonly string[] = process.argv): Set<S> {
  const arg = argv.find(a => a.startsWith('--only='))
  if (arg === undefined) return new Set(sections)
  const names = arg.slice('--only='.length).split(',').map(x => x.trim()).filter(x => x !== '')
  const bad = names.filter(n => !(sections as readonly string[]).includes(n))
  if (names.length === 0 || bad.length > 0) throw new Error(`--only= takes a comma-separated list of ${sections.join(', ')} (got ${arg})`)
  return new Set(names as S[])
}
