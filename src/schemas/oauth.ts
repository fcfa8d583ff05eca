import { Type } from '@sinclair/typebox'
import { OAuthErrors, type OAuthError } from '../errors.js'

export const NO_STORE_HEADER = { type: 'string', description: '`no-store`: tokens and their errors are never cached' }

// Every field is optional and a plain string here: the handler checks presence and emptiness itself,
// so that a missing field is an RFC 6749 invalid_request rather than a generic validation error.
export const TokenRequestSchema = Type.Object({
  grant_type: Type.Optional(Type.String({ description: '`password` (the default) or `refresh_token`', examples: ['password'] })),
  username: Type.Optional(Type.String({ description: 'Username or email address', examples: ['alice'] })),
  password: Type.Optional(Type.String({ examples: ['correct horse battery staple'] })),
  refresh_token: Type.Optional(Type.String({ description: 'With `grant_type=refresh_token`: the refresh token to rotate' })),
  scope: Type.Optional(Type.String({
    description: 'Space-delimited scopes (RFC 6749 section 3.3). Omitted or empty: every scope the user\'s roles grant. ' +
      'On a refresh: a subset of the session\'s scopes',
    examples: ['users:read']
  })),
  client_id: Type.Optional(Type.String({ description: 'Accepted and ignored' })),
  client_secret: Type.Optional(Type.String({ description: 'Accepted and ignored' }))
}, { title: 'TokenRequest' })

export const TokenResponseSchema = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ description: 'Lifetime of the access token in seconds' }),
  scope: Type.String({ description: 'The scopes the access token carries, space-delimited (empty: none beyond a valid token)' }),
  refresh_token: Type.String({ description: 'Opaque, single use: each refresh returns a new one and retires the old' })
}, {
  $id: 'TokenResponse',
  title: 'TokenResponse',
  examples: [{
    access_token: 'eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6Ii4uLiJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl',
    token_type: 'bearer',
    expires_in: 900,
    scope: 'users:read',
    refresh_token: 'Qm9yaW5nIGJ1dCByYW5kb206IDMyIGJ5dGVzIG9mIGl0IGhlcmU'
  }]
})

/** The 200 of the token endpoint: the tokens, never cached. */
export const tokenResponse = {
  description: 'The tokens',
  headers: { 'Cache-Control': NO_STORE_HEADER },
  content: { 'application/json': { schema: Type.Ref(TokenResponseSchema) } }
}

export const RevokeRequestSchema = Type.Object({
  token: Type.Optional(Type.String({ description: 'A refresh token or an access token; either ends its session' })),
  token_type_hint: Type.Optional(Type.String({ description: '`refresh_token` or `access_token`; a hint only (RFC 7009 section 2.1)' })),
  client_id: Type.Optional(Type.String({ description: 'Accepted and ignored' })),
  client_secret: Type.Optional(Type.String({ description: 'Accepted and ignored' }))
}, { title: 'RevokeRequest' })

export const OAuthErrorSchema = Type.Object({
  error: Type.String({ description: 'RFC 6749 section 5.2 error code', examples: ['invalid_grant'] }),
  error_description: Type.String()
}, { $id: 'OAuthError', title: 'OAuthError', examples: [{ error: 'invalid_grant', error_description: 'Incorrect username or password' }] })

const EXAMPLES: Record<number, { description: string, error: OAuthError }> = {
  400: {
    description: '`invalid_request`, `unsupported_grant_type`, `invalid_scope` (malformed, or not held), or `invalid_grant` for a refresh token that is unknown, used, or of an ended session',
    error: OAuthErrors.invalidRefreshToken()
  },
  401: { description: '`invalid_grant`: unknown user or wrong password (the same answer for both), or, with the right password, a disabled account', error: OAuthErrors.invalidGrant() },
  413: { description: 'Request body too large', error: OAuthErrors.payloadTooLarge(16384) },
  429: { description: '`temporarily_unavailable`: a rate limit exceeded, or (password grant) the account\'s logins are throttled after failed attempts; see Retry-After', error: OAuthErrors.rateLimited(60) },
  500: { description: '`server_error`', error: OAuthErrors.serverError() },
  503: { description: '`temporarily_unavailable`: the database does not answer, the shared rate-limit store (Redis) does not answer (this endpoint fails closed), or too many password checks are under way; see Retry-After', error: OAuthErrors.databaseUnavailable() }
}

const OAUTH_HEADERS: Record<number, Record<string, { type: string, description: string }>> = {
  401: { 'WWW-Authenticate': { type: 'string', description: '`Bearer`' } },
  429: { 'Retry-After': { type: 'string', description: 'Seconds until a retry may be let through' } },
  503: { 'Retry-After': { type: 'string', description: 'Seconds to wait before retrying' } }
}

/** RFC 6749 section 5.2 error responses, with no-store like every answer of the token endpoint. */
export function oauthErrorResponses (...statuses: number[]): Record<number, unknown> {
  return Object.fromEntries(statuses.map(status => {
    const { description, error } = EXAMPLES[status]
    return [status, {
      description,
      headers: { 'Cache-Control': NO_STORE_HEADER, ...OAUTH_HEADERS[status] },
      content: { 'application/json': { schema: Type.Ref(OAuthErrorSchema), example: error.toBody() } }
    }]
  }))
}
