import type { FastifySchemaCompiler } from 'fastify'
import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Value } from '@sinclair/typebox/value'

/**
 * A route's querystring validator that converts strings to the schema's numbers and booleans (a query has no other
 * type), while bodies keep the service-wide rule that nothing is coerced. Errors come out in the shape Fastify's own
 * validation errors have, so that the error handlers name the field.
 */
export const querystringValidator: FastifySchemaCompiler<unknown> = ({ schema: routeSchema }) => {
  const schema = routeSchema as TSchema
  const check = TypeCompiler.Compile(schema)
  return (data) => {
    const value = Value.Convert(schema, Value.Default(schema, Value.Clone(data ?? {})))
    if (check.Check(value)) return { value }
    const validation = [...check.Errors(value)].map(e => ({ instancePath: e.path, keyword: 'querystring', message: e.message.toLowerCase() }))
    return { error: Object.assign(new Error('querystring is invalid'), { validation, validationContext: 'querystring' }) }
  }
}
