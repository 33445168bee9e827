/**
 * fast-check arbitraries for hostile requests, generated from a route's own schemas in the OpenAPI document:
 * values the schema accepts (so that some requests reach the handlers), the same with one member made
 * hostile (type-confused, unicode, oversized, prototype-polluting keys), any JSON at all, and text that is
 * not JSON. Objects are built without a prototype so that `__proto__` stays an own key and reaches the wire.
 */
import fc from 'fast-check'
import type { Operation, Schema } from './support.js'

/** Keys that pollute prototypes when a parser or a merge takes them at their word. */
export const POLLUTING_KEYS = ['__proto__', 'constructor', 'prototype'] as const

/** A marker for what polluting payloads try to plant. */
export const POLLUTED = 'porthole_polluted'

const BIG = 'x'.repeat(70_000)

export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }), // any code point, lone surrogates included
  fc.constantFrom(
    '', ' ', '\u0000', '\ud800', '\u202e', 'é'.normalize('NFD'), '💥'.repeat(300), 'x'.repeat(201), 'x'.repeat(5000), BIG,
    '../../../etc/passwd', '%00', '%zz', '${jndi:ldap://127.0.0.1/x}', "' OR 1=1 --", '<script>alert(1)</script>', '{{7*7}}',
    '__proto__', 'constructor', 'prototype', 'qemu+ext:///system?command=/bin/sh', 'NaN', '-1', '1e309', 'true', 'null', '[]', '{}'
  )
)

const hostileKey: fc.Arbitrary<string> = fc.oneof(fc.constantFrom(...POLLUTING_KEYS, '', ' ', 'a.b', '$where', '0'), fc.string({ maxLength: 12 }))

/** An object with these entries and no prototype: `__proto__` is an ordinary own key of it. */
function bare (entries: Array<[string, unknown]>): Record<string, unknown> {
  const o = Object.create(null) as Record<string, unknown>
  for (const [k, v] of entries) o[k] = v
  return o
}

/** What a polluting payload tries to set: roles, tenants, a marker. */
const pollution = fc.constantFrom<unknown>(
  bare([[POLLUTED, true], ['role', 'admin'], ['isAdmin', true]]),
  bare([['prototype', bare([[POLLUTED, true], ['tenantId', '00000000-0000-4000-8000-000000000000']])]]),
  bare([['toString', 'x'], ['valueOf', 1], ['hasOwnProperty', 'x']])
)

/** Any JSON value, with hostile strings and keys. */
export const anyJson: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>(tie => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    hostileString,
    fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null),
    fc.constantFrom(2 ** 53 + 1, -0, 1e308, -1, 0, 4294967296),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.array(fc.tuple(hostileKey, tie('value')), { maxLength: 4 }).map(bare),
    pollution
  )
})).value

function typeOf (s: Schema): string | undefined {
  if (Array.isArray(s.type)) return s.type.find((t: string) => t !== 'null') ?? s.type[0]
  return s.type ?? (s.properties !== undefined ? 'object' : undefined)
}

/**
 * Values `s` accepts. `hints` gives arbitraries by member name for members whose schema says little
 * (`connection` is any object to the document; the handler checks it per agent).
 */
export function validValue (s: Schema, hints: Record<string, fc.Arbitrary<unknown>> = {}): fc.Arbitrary<unknown> {
  if ('const' in s) return fc.constant(s.const)
  if (Array.isArray(s.enum)) return fc.constantFrom(...s.enum as unknown[])
  const union = s.anyOf ?? s.oneOf
  if (Array.isArray(union)) return fc.oneof(...union.map((u: Schema) => validValue(u, hints)))
  switch (typeOf(s)) {
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, Schema>
      const required = new Set<string>((s.required ?? []) as string[])
      const names = Object.keys(props)
      if (names.length === 0) return fc.constant(bare([]))
      return fc.tuple(...names.map(n => hints[n] ?? validValue(props[n] as Schema, hints)), fc.array(fc.boolean(), { minLength: names.length, maxLength: names.length }))
        .map(([...vals]) => {
          const keep = vals.pop() as boolean[]
          const entries = names.map((n, i): [string, unknown] => [n, vals[i]]).filter(([n], i) => required.has(n) || keep[i] === true)
          // minProperties: keep the first optional members needed
          for (const n of names) if (entries.length < (s.minProperties ?? 0) && !entries.some(([k]) => k === n)) entries.push([n, vals[names.indexOf(n)]])
          return bare(entries)
        })
    }
    case 'array': return fc.array(validValue(s.items ?? {}, hints), { minLength: s.minItems ?? 0, maxLength: Math.min(s.maxItems ?? 3, 3) })
    case 'string': {
      if (s.format === 'uuid') return hints['*uuid'] ?? fc.uuid()
      if (s.format === 'date-time') return fc.date({ noInvalidDate: true }).map(d => d.toISOString())
      const min = s.minLength ?? 0
      const max = Math.min(s.maxLength ?? 40, 200)
      if (s.pattern !== undefined) return fc.stringMatching(new RegExp(s.pattern, 'u')).filter(v => v.length >= min && v.length <= (s.maxLength ?? Infinity))
      return fc.string({ unit: 'grapheme', minLength: min, maxLength: max })
    }
    case 'integer': return fc.integer({ min: s.minimum ?? -1000, max: s.maximum ?? 100_000 })
    case 'number': return fc.double({ min: s.minimum ?? -1e6, max: s.maximum ?? 1e6, noNaN: true })
    case 'boolean': return fc.boolean()
    case 'null': return fc.constant(null)
    default: return anyJson
  }
}

/** The object nodes of a value, for a mutation to pick one. */
function objects (v: unknown, out: Array<Record<string, unknown>> = []): Array<Record<string, unknown>> {
  if (v !== null && typeof v === 'object') {
    if (!Array.isArray(v)) out.push(v as Record<string, unknown>)
    for (const x of Object.values(v)) objects(x, out)
  }
  return out
}

/** A valid value with one thing made hostile: a member's value, an extra member, a polluting key. */
export function mutated (valid: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.tuple(valid, fc.nat(), fc.nat(), fc.constantFrom('replace', 'add', 'pollute', 'delete'), hostileKey, anyJson, fc.constantFrom(...POLLUTING_KEYS), pollution)
    .map(([v, i, j, how, key, value, pkey, pvalue]) => {
      const copy = structuredClone(v, {}) as unknown
      const rebuilt = rebare(copy)
      const nodes = objects(rebuilt)
      const node = nodes[i % Math.max(1, nodes.length)]
      if (node === undefined) return value
      const keys = Object.keys(node)
      const k = keys[j % Math.max(1, keys.length)]
      if (how === 'replace' && k !== undefined) node[k] = value
      else if (how === 'delete' && k !== undefined) delete node[k]
      else if (how === 'pollute') node[pkey] = pvalue
      else node[key] = value
      return rebuilt
    })
}

/** structuredClone gives objects a prototype again: back to bare ones. */
function rebare (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(rebare)
  if (v !== null && typeof v === 'object') return bare(Object.entries(v).map(([k, x]) => [k, rebare(x)]))
  return v
}

/** Text that is not quite JSON, or JSON of a hostile shape. */
export const notJson: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.constantFrom(
    '', ' ', 'null', '[]', '"x"', '0', 'true', '{', '{"a":', '{"a":1}{"b":2}', '\ufeff{}', '{"a":1,}', "{'a':1}", 'NaN', '{"a":NaN}',
    '{"a":1e99999}', '[' .repeat(20_000) + ']'.repeat(20_000), '{"a":'.repeat(5000) + '1' + '}'.repeat(5000), `"${BIG}"`, `{"name":"${BIG}"}`,
    '{"__proto__":{"porthole_polluted":true}}', '{"constructor":{"prototype":{"porthole_polluted":true}}}', '{"action":"on","action":"explode"}'
  )
)

export interface HostileRequest {
  path: string
  headers: Record<string, string>
  body?: string | Buffer
}

/** Every byte of the string's UTF-8 percent-encoded but the unreserved ones (a lone surrogate as U+FFFD's). */
function percentEncoded (s: string): string {
  return [...Buffer.from(s, 'utf8')].map(b => /[A-Za-z0-9._~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join('')
}

/** Header values fetch can send (a ByteString without CR, LF or NUL). */
const headerValue = hostileString.map(s => s.replace(/[^\x20-\x7e\x80-\xff\t]/g, '').slice(0, 4000))

/** Which parts of a request are hostile: one at a time mostly, so that the others let it reach deep. */
const PARTS = ['path', 'query', 'headers', 'contentType', 'auth', 'body'] as const
type Part = typeof PARTS[number]
const hostileParts: fc.Arbitrary<Set<Part>> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(new Set<Part>()) },
  { weight: 8, arbitrary: fc.constantFrom(...PARTS).map(p => new Set<Part>([p])) },
  { weight: 2, arbitrary: fc.subarray([...PARTS], { minLength: 2 }).map(ps => new Set<Part>(ps)) }
)

export interface Auth {
  /** Authorization headers of real keys. */
  valid: fc.Arbitrary<string>
  /** Malformed, unknown or missing ones. */
  hostile: fc.Arbitrary<string | undefined>
}

/**
 * Requests for `op` that are valid by its schemas (path ids from `ids`, members from `hints` by name) but for
 * one part, sometimes none and sometimes several, made hostile: path ids, query, headers, content type,
 * authorization or body.
 */
export function hostileRequest (op: Operation, ids: fc.Arbitrary<string>, auth: Auth, hints: Record<string, fc.Arbitrary<unknown>> = {}): fc.Arbitrary<HostileRequest> {
  const withIds = { '*uuid': ids, ...hints }
  const hostilePathValue = fc.oneof(
    { weight: 2, arbitrary: hostileString.filter(s => s !== '').map(s => percentEncoded(s.slice(0, 300))) },
    { weight: 1, arbitrary: fc.constantFrom('..', '%2e%2e', '%2F', '%00', '%', '%zz', '.', '~', 'a%2Fb', '%C0%AE', 'x'.repeat(150)) }
  )
  const pathOf = (value: fc.Arbitrary<string>): fc.Arbitrary<string> => fc.tuple(...op.pathParams.map(() => value)).map(vals => {
    let i = 0
    return op.path.replace(/\{[^}]+\}/g, () => vals[i++] as string)
  })
  const validEntries = fc.tuple(...Object.entries(op.query).map(([name, s]) => fc.option(validValue(s, withIds).map(v => [name, String(v)] as [string, string]), { nil: undefined })))
    .map(es => es.filter((e): e is [string, string] => e !== undefined))
  const hostileEntry = fc.oneof(
    ...Object.keys(op.query).map(name => fc.tuple(fc.constant(name), hostileString)),
    fc.tuple(fc.oneof(hostileKey, fc.constantFrom(`__proto__[${POLLUTED}]`, `constructor[prototype][${POLLUTED}]`, 'a[]', 'a[0]')), hostileString)
  )
  const hostileQuery = fc.tuple(validEntries, fc.array(hostileEntry, { minLength: 1, maxLength: 4 }), fc.constantFrom('', '', '&&', '&=', '&%zz', '&a=%', '#frag'))
    .map(([valid, bad, raw]) => `?${new URLSearchParams([...valid, ...bad].map(([k, v]): [string, string] => [k, v.slice(0, 2000)])).toString()}${raw}`)
  const validQuery = validEntries.map(es => es.length === 0 ? '' : `?${new URLSearchParams(es).toString()}`)
  const hostileType = fc.constantFrom(
    'application/json; charset=utf-16', 'APPLICATION/JSON', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
    'application/json-patch+json', 'application/xml', 'application/json; charset=utf-8; x=', ''
  )
  const validHeaders = fc.record(Object.fromEntries(Object.entries(op.headers).map(([name, s]) => [name, validValue(s, withIds).map(String)])), { requiredKeys: [] })
  const hostileHeaders = fc.record({
    ...Object.fromEntries(Object.keys(op.headers).map(name => [name, headerValue])),
    accept: fc.constantFrom('application/json', 'text/html', '*/*', 'application/xml', 'text/event-stream', ''),
    'x-forwarded-for': fc.constantFrom('127.0.0.1', '::1, 10.0.0.1', 'not an address', '1.2.3.4'.repeat(100)),
    'accept-language': headerValue,
    'content-length-x': headerValue
  }, { requiredKeys: [] })
  const validBody = op.body === undefined ? fc.constant(undefined) : validValue(op.body, withIds).map(v => JSON.stringify(v))
  const hostileBody: fc.Arbitrary<string | Buffer> = fc.oneof(
    { weight: op.body === undefined ? 0 : 4, arbitrary: op.body === undefined ? fc.constant('{}') : mutated(validValue(op.body, withIds)).map(v => JSON.stringify(v) ?? 'undefined') },
    { weight: 2, arbitrary: anyJson.map(v => JSON.stringify(v)) },
    { weight: 2, arbitrary: notJson },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }).map(b => Buffer.concat([Buffer.from('{"name":"'), Buffer.from(b), Buffer.from('"}')])) }
  )
  return fc.record({
    parts: hostileParts,
    path: pathOf(ids.map(encodeURIComponent)),
    badPath: pathOf(hostilePathValue),
    query: validQuery,
    badQuery: hostileQuery,
    headers: validHeaders,
    badHeaders: hostileHeaders,
    badType: hostileType,
    auth: auth.valid,
    badAuth: auth.hostile,
    body: validBody,
    badBody: hostileBody
  }).map(r => {
    const bad = (p: Part): boolean => r.parts.has(p)
    const headers: Record<string, string> = { ...(bad('headers') ? r.badHeaders : r.headers) as Record<string, string> }
    const authorization = bad('auth') ? r.badAuth : r.auth
    if (authorization !== undefined) headers.authorization = authorization
    // fetch sends no body with a GET
    const body = op.method === 'GET' ? undefined : bad('body') ? r.badBody : r.body
    if (body !== undefined) headers['content-type'] = bad('contentType') ? r.badType : 'application/json'
    const path = (bad('path') && op.pathParams.length > 0 ? r.badPath : r.path) + (bad('query') ? r.badQuery : r.query)
    return { path, headers, ...(body === undefined ? {} : { body }) }
  })
}
