import { Type } from '@sinclair/typebox'
import { Problems, type ProblemError } from '../errors.js'

export const FieldErrorSchema = Type.Object({
  field: Type.String({ description: 'The input that was refused, as a dotted path (for example `username`)' }),
  message: Type.String({ description: 'Why it was refused, in plain words (for example `must be at least 8 characters`)' })
})

export const ProblemSchema = Type.Object({
  type: Type.String({ description: 'A URI for the kind of problem; `about:blank` means the status says it all' }),
  title: Type.String({ description: 'The HTTP status phrase' }),
  status: Type.Integer(),
  detail: Type.String({ description: 'What went wrong, in words a person can read' }),
  code: Type.String({ description: 'A stable machine-readable code, for example `invalid_token`', examples: ['invalid_token'] }),
  errors: Type.Optional(Type.Array(FieldErrorSchema, { description: 'Present on validation errors (`validation_error`): every refused input at once, one entry each, in plain words' }))
}, {
  $id: 'Problem',
  title: 'Problem',
  description: 'RFC 9457 problem details',
  additionalProperties: true,
  examples: [{ type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'Could not validate credentials', code: 'invalid_token' }]
})

// One example per status, made by the same factories the service answers with.
const EXAMPLES: Record<number, { description: string, error: ProblemError }> = {
  400: {
    description: 'The request is malformed, or inputs are invalid (`validation_error`: every one listed in `errors`)',
    error: Problems.validation([{ field: 'username', message: 'must be 3 to 32 letters, digits, _, . or -' }, { field: 'email', message: 'must be an email address' }])
  },
  401: { description: 'Missing (`not_authenticated`), invalid (`invalid_token`) or expired (`token_expired`: refresh and retry) access token, or its session has ended (`invalid_token`)', error: Problems.invalidToken() },
  403: { description: '`insufficient_scope`: the token lacks a scope the operation needs (RFC 6750 section 3.1)', error: Problems.insufficientScope(['users:read']) },
  404: { description: 'Not found', error: Problems.notFound('No active session with that id') },
  409: { description: 'Conflict with the current state', error: Problems.userExists() },
  413: { description: 'Request body too large', error: Problems.payloadTooLarge(16384) },
  415: { description: 'Unsupported Content-Type', error: Problems.unsupportedMediaType('Content-Type must be application/json') },
  429: { description: 'A rate limit exceeded (`rate_limited`), or the account\'s logins throttled after failed attempts (`login_throttled`); see Retry-After', error: Problems.rateLimited(60) },
  500: { description: 'Unexpected server error', error: Problems.internal() },
  503: { description: 'A dependency is unavailable: the database does not answer (`database_unavailable`), Redis does not answer on a route whose rate limit fails closed (`rate_limit_unavailable`), or too many password checks are under way (`busy`); see Retry-After', error: Problems.databaseUnavailable() }
}

export const RESPONSE_HEADERS: Record<number, Record<string, { type: string, description: string }>> = {
  401: { 'WWW-Authenticate': { type: 'string', description: '`Bearer`, with `error="invalid_token"` and a description when a token was sent (RFC 6750 section 3)' } },
  403: { 'WWW-Authenticate': { type: 'string', description: '`Bearer error="insufficient_scope", scope="..."` naming the scopes needed' } },
  429: { 'Retry-After': { type: 'string', description: 'Seconds until a retry may be let through' } },
  503: { 'Retry-After': { type: 'string', description: 'Seconds after which a retry may succeed' } }
}

/** Response declarations for the given error statuses, all answered as application/problem+json. */
export function problemResponses (...statuses: number[]): Record<number, unknown> {
  return Object.fromEntries(statuses.map(status => {
    const { description, error } = EXAMPLES[status]
    return [status, {
      description,
      ...(RESPONSE_HEADERS[status] !== undefined ? { headers: RESPONSE_HEADERS[status] } : {}),
      content: { 'application/problem+json': { schema: Type.Ref(ProblemSchema), example: error.toBody() } }
    }]
  }))
}
