import { Type } from '@sinclair/typebox'

// Every field is optional and a plain string here: the handler checks presence and emptiness itself,
// so that a missing field is an RFC 6749 invalid_request rather than a generic validation error.
export const TokenRequestSchema = Type.Object({
  grant_type: Type.Optional(Type.String({ description: '`password` (the default) or `refresh_token`', examples: ['password'] })),
  username: Type.Optional(Type.String({ description: 'Username or email address', examples: ['alice'] })),
  password: Type.Optional(Type.String({ examples: ['correct horse battery staple'] })),
  refresh_token: Type.Optional(Type.String({ description: 'With `grant_type=refresh_token`: the refresh token to rotate' })),
  scope: Type.Optional(Type.String({ description: 'Accepted and ignored: no scopes are granted' })),
  client_id: Type.Optional(Type.String({ description: 'Accepted and ignored' })),
  client_secret: Type.Optional(Type.String({ description: 'Accepted and ignored' }))
}, { title: 'TokenRequest' })

export const TokenResponseSchema = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ description: 'Lifetime of the access token in seconds' }),
  refresh_token: Type.String({ description: 'Opaque, single use: each refresh returns a new one and retires the old' })
}, { $id: 'TokenResponse', title: 'TokenResponse' })

export const RevokeRequestSchema = Type.Object({
  token: Type.Optional(Type.String({ description: 'A refresh token or an access token; either ends its session' })),
  token_type_hint: Type.Optional(Type.String({ description: '`refresh_token` or `access_token`; a hint only (RFC 7009 section 2.1)' })),
  client_id: Type.Optional(Type.String({ description: 'Accepted and ignored' })),
  client_secret: Type.Optional(Type.String({ description: 'Accepted and ignored' }))
}, { title: 'RevokeRequest' })

export const OAuthErrorSchema = Type.Object({
  error: Type.String({ description: 'RFC 6749 section 5.2 error code', examples: ['invalid_grant'] }),
  error_description: Type.String()
}, { $id: 'OAuthError', title: 'OAuthError' })

const DESCRIPTIONS: Record<number, string> = {
  400: '`invalid_request`, `unsupported_grant_type`, or `invalid_grant` for a refresh token that is unknown, used, or of an ended session',
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
