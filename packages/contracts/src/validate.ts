import { FormatRegistry, Kind, type Static, type TObject, type TSchema, type TUnion } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Value, type ValueError } from '@sinclair/typebox/value'
import { ValidationError } from './errors.js'
import { UUID_PATTERN } from './common.js'

const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/
if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', v => UUID_PATTERN.test(v))
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', v => DATE_TIME.test(v) && !Number.isNaN(Date.parse(v)))

/** A compiled checker for a contract: the same schema the API validates requests with. */
export interface Checker<T extends TSchema> {
  check (value: unknown): value is Static<T>
  /** Returns the value typed, or throws a ValidationError naming the first bad field. */
  parse (value: unknown): Static<T>
  /** Why `value` does not match, for a log line or a job's failure (at most 500 characters). */
  explain (value: unknown): string
}

/**
 * The checker compiles its schema on first use, not here: modules build their checkers at import, and a
 * process that compiled every one of them before its first log line started that much later.
 */
export function compile<T extends TSchema> (schema: T, name: string): Checker<T> {
  let compiled: ReturnType<typeof TypeCompiler.Compile<T>> | undefined
  const checker = (): ReturnType<typeof TypeCompiler.Compile<T>> => (compiled ??= TypeCompiler.Compile(schema))
  function parse (v: unknown): Static<T> {
    const c = checker()
    if (c.Check(v)) return v
    const { path, message } = firstError(c.Errors(v).First())
    const field = path.replace(/^\//, '').replaceAll('/', '.')
    throw new ValidationError(`invalid ${name}: ${field === '' ? '' : field + ': '}${message}`, field === '' ? undefined : field)
  }
  return {
    check: (v: unknown): v is Static<T> => checker().Check(v),
    parse,
    explain (v: unknown): string {
      // A message body that did not parse as JSON reaches the handlers as undefined.
      if (v === undefined) return `invalid ${name}: the message body is not JSON`
      try { parse(v) } catch (err) { return (err as Error).message.slice(0, 500) }
      return `${name} is valid`
    }
  }
}

/**
 * The member that names a tagged union's variant (`kind`, `agent`): a property each variant, an object, fixes to
 * a literal of its own. Undefined for any other schema.
 */
export function tagOf (schema: TSchema): string | undefined {
  if (schema[Kind] !== 'Union') return undefined
  const variants = (schema as TUnion).anyOf
  const objects = variants.filter((v): v is TObject => v[Kind] === 'Object')
  if (objects.length === 0 || objects.length !== variants.length) return undefined
  return Object.keys(objects[0]!.properties).find(key => objects.every(o => o.properties[key]?.const !== undefined))
}

/**
 * The error to report. For a tagged union TypeBox says only "Expected union value": the variant the value's tag
 * names is asked instead, so that the message names the member that is wrong (`action`, `connection.host`).
 */
function firstError (e: ValueError | undefined): { path: string, message: string } {
  if (e === undefined) return { path: '', message: 'does not match the schema' }
  const tag = tagOf(e.schema)
  if (tag !== undefined && typeof e.value === 'object' && e.value !== null) {
    const variants = (e.schema as TUnion).anyOf as TObject[]
    const named = (e.value as Record<string, unknown>)[tag]
    const variant = variants.find(v => v.properties[tag]?.const === named)
    if (variant === undefined) return { path: `${e.path}/${tag}`, message: `expected one of ${variants.map(v => JSON.stringify(v.properties[tag]?.const)).join(', ')}` }
    const inner = Value.Errors(variant, e.value).First()
    if (inner !== undefined) return firstError({ ...inner, path: `${e.path}${inner.path}` })
  }
  return { path: e.path, message: e.message }
}
