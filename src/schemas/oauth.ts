import { Type } from '@sinclair/typebox'

// Every field is optional and a plain string here: the handler checks presence and emptiness itself,
// so that a missing field is an RFC 6749 invalid_request rather than a generic validation error.
export const TokenRequestSchema = Type.Object({
  grant_type: Type.Optional(Type.String({ description: 'Only `password` is supported; defaults to `password`', examples: ['password'] })),
  username: Type.Optional(Type.String({ description: 'Username or email address', examples: ['alice'] })),
  password: Type.Optional(Type.String({ examples: ['correct horse battery staple'] })),
  scope: Type.Optional(Type.String({ description: 'Accepted and ignored: no scopes are granted' })),
  client_id: Type.Optional(Type.String({ description: 'Accepted and ignored' })),
  client_secret: Type.Optional(Type.String({ description: 'Accepted and ignored' }))
}, { title: 'TokenRequest' })

export const TokenResponseSchema = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ description: 'Lifetime of the access token in seconds' })
}, { $id: 'TokenResponse', title: 'TokenResponse' })

export const OAuthErrorSchema = Type.Object({
  error: Type.String({ description: 'RFC 6749 section 5.2 error code', examples: ['invalid_grant'] }),
  error_description: Type.String()
}, { $id: 'OAuthError', title: 'OAuthError' })

const DESCRIPTIONS: Record<number, string> = {
  400: '`invalid_request` or `unsupported_grant_type`',
  401: '`invalid_grant`: unknown user or wrong password (the same answer for both)',
  413: 'Request body too large',
  429: 'Rate limit exceeded; see Retry-After',
  500: '`server_error`'
}

export function oauthErrorResponses (...statuses: number[]): Record<number, unknown> {
  return Object.fromEntries(statuses.map(status => [status, {
    description: DESCRIPTIONS[status] ?? 'Error',
    content: { 'application/json': { schema: Type.Ref(OAuthErrorSchema) } }
  }]))
}
