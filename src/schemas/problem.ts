import { Type } from '@sinclair/typebox'

export const FieldErrorSchema = Type.Object({
  field: Type.String({ description: 'The input that was refused, as a dotted path (for example `username`)' }),
  message: Type.String({ description: 'Why it was refused' })
})

export const ProblemSchema = Type.Object({
  type: Type.String({ description: 'A URI for the kind of problem; `about:blank` means the status says it all' }),
  title: Type.String({ description: 'The HTTP status phrase' }),
  status: Type.Integer(),
  detail: Type.String({ description: 'What went wrong, in words a person can read' }),
  code: Type.String({ description: 'A stable machine-readable code, for example `invalid_token`' }),
  errors: Type.Optional(Type.Array(FieldErrorSchema, { description: 'Present on validation errors: one entry per refused input' }))
}, { $id: 'Problem', title: 'Problem', description: 'RFC 9457 problem details', additionalProperties: true })

const DESCRIPTIONS: Record<number, string> = {
  400: 'The request is malformed or an input is invalid',
  401: 'Missing, invalid or expired access token',
  404: 'Not found',
  409: 'Conflict with the current state',
  413: 'Request body too large',
  415: 'Unsupported Content-Type',
  429: 'Rate limit exceeded; see Retry-After',
  500: 'Unexpected server error',
  503: 'A dependency is unavailable'
}

/** Response declarations for the given error statuses, all answered as application/problem+json. */
export function problemResponses (...statuses: number[]): Record<number, unknown> {
  return Object.fromEntries(statuses.map(status => [status, {
    description: DESCRIPTIONS[status] ?? 'Error',
    content: { 'application/problem+json': { schema: Type.Ref(ProblemSchema) } }
  }]))
}
