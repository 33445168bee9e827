/**
 * TypeBox validation for every route (the same schemas as the contracts), with messages that say what was
 * expected: TypeBox reports a bad enum value as "Expected union value", which does not help a caller.
 */
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify'
import { TypeBoxValidatorCompiler, type TSchema } from '@fastify/type-provider-typebox'

interface SchemaLike { properties?: Record<string, SchemaLike>, items?: SchemaLike, anyOf?: SchemaLike[], const?: unknown, additionalProperties?: unknown }

function schemaAt (schema: SchemaLike, path: string): SchemaLike | undefined {
  let s: SchemaLike | undefined = schema
  for (const part of path.split('/').filter(p => p !== '')) {
    if (s === undefined) return undefined
    s = s.properties?.[part.replaceAll('~1', '/').replaceAll('~0', '~')] ?? (/^\d+$/.test(part) ? s.items : undefined)
  }
  return s
}

/** Compiles each route's schema on its first request, not as the app gets ready (see compilers.ts). */
export const validatorCompiler: FastifySchemaCompiler<TSchema> = (route) => {
  let validate: ReturnType<typeof TypeBoxValidatorCompiler> | undefined
  return (value: unknown) => {
    validate ??= TypeBoxValidatorCompiler(route)
    const r = validate(value) as { value?: unknown, error?: Array<{ message: string, instancePath: string }> }
    if (r.error === undefined) return { value: r.value }
    const errors = r.error.map(e => {
      const at = schemaAt(route.schema as SchemaLike, e.instancePath)
      const consts = at?.anyOf?.every(x => x.const !== undefined) === true ? at.anyOf.map(x => String(x.const)) : undefined
      if (consts !== undefined && /union/i.test(e.message)) return { ...e, message: `expected one of ${consts.join(', ')}` }
      if (at === undefined && /unexpected property/i.test(e.message)) return { ...e, message: 'unknown member' }
      return e
    })
    return { error: errors.map((e): FastifySchemaValidationError => ({ keyword: 'typebox', schemaPath: '', params: {}, ...e })) }
  }
}
