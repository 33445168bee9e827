/** Tables for people, JSON for scripts. */

export type Column<T> = [header: string, value: (row: T) => unknown]

export interface Out {
  json: boolean
  /** Writes a line to stdout. */
  line: (s: string) => void
}

/** Prints rows as an aligned table (or as JSON); an empty list says so on stdout as a table, `[]` as JSON. */
export function printRows<T> (out: Out, rows: T[], columns: Array<Column<T>>, empty = '(none)'): void {
  if (out.json) { out.line(JSON.stringify(rows, null, 2)); return }
  if (rows.length === 0) { out.line(empty); return }
  const cells = rows.map(r => columns.map(([, f]) => cell(f(r))))
  const widths = columns.map(([h], i) => Math.max(h.length, ...cells.map(c => (c[i] ?? '').length)))
  const fmt = (cs: string[]): string => cs.map((c, i) => i === cs.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  out.line(fmt(columns.map(([h]) => h)))
  for (const c of cells) out.line(fmt(c))
}

/** Prints one object as `key: value` lines (or as JSON). */
export function printObject (out: Out, obj: Record<string, unknown>, fields?: Array<Column<Record<string, unknown>>>): void {
  if (out.json) { out.line(JSON.stringify(obj, null, 2)); return }
  const pairs: Array<[string, string]> = fields === undefined
    ? Object.entries(obj).map(([k, v]) => [k, cell(v)])
    : fields.map(([h, f]) => [h, cell(f(obj))])
  const w = Math.max(...pairs.map(([k]) => k.length))
  for (const [k, v] of pairs) if (v !== '') out.line(`${(k + ':').padEnd(w + 1)} ${v}`)
}

export function cell (v: unknown): string {
  if (v === undefined || v === null) return ''
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  return JSON.stringify(v)
}

/** "3 s ago", "2 min ago" for a timestamp, for tables. */
export function ago (iso: unknown, now = Date.now()): string {
  if (typeof iso !== 'string') return ''
  const s = Math.round((now - Date.parse(iso)) / 1000)
  if (Number.isNaN(s)) return iso
  if (s < 0) return `in ${human(-s)}`
  return `${human(s)} ago`
}

function human (s: number): string {
  if (s < 90) return `${s} s`
  if (s < 90 * 60) return `${Math.round(s / 60)} min`
  if (s < 36 * 3600) return `${Math.round(s / 3600)} h`
  return `${Math.round(s / 86400)} d`
}
