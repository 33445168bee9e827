import { FormatRegistry, type Static, type TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { ValidationError } from './errors.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/
if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', v => UUID.test(v))
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', v => DATE_TIME.test(v) && !Number.isNaN(Date.parse(v)))

/** A compiled checker for a contract: the same schema the API validates requests with. */
export interface Checker<T extends TSchema> {
  check (value: unknown): value is Static<T>
  /** Returns the value typed, or throws a ValidationError naming the first bad field. */
  parse (value: unknown): Static<T>
}

/**
 * The checker compiles its schema on first use, not here: modules build their checkers at import, and a
 * process that compiled every one of them before its first log line started that much later.
 */
export function compile<T extends TSchema> (schema: T, name: string): Checker<T> {
  let compiled: ReturnType<typeof TypeCompiler.Compile<T>> | undefined
  const checker = (): ReturnType<typeof TypeCompiler.Compile<T>> => (compiled ??= TypeCompiler.Compile(schema))
  return {
    check: (v: unknown): v is Static<T> => checker().Check(v),
    parse (v: unknown): Static<T> {
      const c = checker()
      if (c.Check(v)) return v
      const first = c.Errors(v).First()
      const field = first?.path.replace(/^\//, '').replaceAll('/', '.') ?? ''
      throw new ValidationError(`invalid ${name}: ${field === '' ? '' : field + ': '}${first?.message ?? 'does not match the schema'}`, field === '' ? undefined : field)
    }
  }
}
