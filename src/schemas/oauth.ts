import { Type } from '@sinclair/typebox'
import { OAuthErrors, type OAuthError } from '../errors.js'

export const NO_STORE_HEADER = { type: 'string', description: '`no-store`: tokens and their errors are never cached' }

// Every field is optional and a plain string here: the handler checks presence and emptiness itself,
// so that a missing field is an RFC 6749 invalid_request rather than a generic validation error.
export const TokenRequestSchema = Type.Object({
  grant_type: Type.Optional(Type.String({ description: '`password` (the default), `refresh_token` or `client_credentials`', examples: ['password'] })),
  username: Type.Optional(Type.String({ description: 'Username or email address', examples: ['alice'] })),
  password: Type.Optional(Type.String({ examples: ['correct horse battery staple'] })),
  refresh_token: Type.Optional(Type.String({ description: 'With `grant_type=refresh_token`: the refresh token to rotate' })),
  scope: Type.Optional(Type.String({
    description: 'Space-delimited scopes (RFC 6749 section 3.3). Omitted or empty: every scope the user\'s roles grant ' +
      '(a client: every scope it was registered with). On a refresh: a subset of the session\'s scopes',
    examples: ['users:read']
  })),
  client_id: Type.Optional(Type.String({ description: 'With `client_credentials`: the client, when it authenticates with `client_secret_post` instead of HTTP Basic. Ignored by the other grants' })),
  client_secret: Type.Optional(Type.String({ description: 'With `client_credentials` and `client_secret_post`: the client\'s secret. Ignored by the other grants' }))
}, { title: 'TokenRequest' })

export const TokenResponseSchema = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ description: 'Lifetime of the access token in seconds' }),
  scope: Type.String({ description: 'The scopes the access token carries, space-delimited (empty: none beyond a valid token)' }),
  refresh_token: Type.Optional(Type.String({ description: 'Opaque, single use: each refresh returns a new one and retires the old. None for `client_credentials`' }))
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

/** Client authentication (RFC 6749 section 2.3.1) by form fields; HTTP Basic is the other way. */
const CLIENT_FIELDS = {
  client_id: Type.Optional(Type.String({ description: 'The client, with `client_secret_post` (or use HTTP Basic)' })),
  client_secret: Type.Optional(Type.String({ description: 'The client\'s secret, with `client_secret_post`' }))
}

export const IntrospectRequestSchema = Type.Object({
  token: Type.Optional(Type.String({ description: 'An access token' })),
  token_type_hint: Type.Optional(Type.String({ description: '`access_token` or `refresh_token`; a hint only (RFC 7662 section 2.1)' })),
  ...CLIENT_FIELDS
}, { title: 'IntrospectRequest' })

export const IntrospectionSchema = Type.Object({
  active: Type.Boolean({ description: 'false for every token that would be refused, with no other member' }),
  token_type: Type.Optional(Type.Literal('bearer', { description: 'RFC 7662 section 2.2: the type of RFC 6749 section 5.1, as the token endpoint answered' })),
  sub: Type.Optional(Type.String({ description: 'The user, or the client of a client-credentials token' })),
  client_id: Type.Optional(Type.String({ description: 'Present on a service client\'s token' })),
  username: Type.Optional(Type.String({ description: 'Present on a user\'s token' })),
  sid: Type.Optional(Type.String({ description: 'The session (a client\'s token: the client id)' })),
  scope: Type.Optional(Type.String()),
  exp: Type.Optional(Type.Integer()),
  iat: Type.Optional(Type.Integer()),
  iss: Type.Optional(Type.String()),
  aud: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
  jti: Type.Optional(Type.String())
}, {
  title: 'Introspection',
  additionalProperties: false,
  description: 'RFC 7662 section 2.2',
  examples: [
    { active: true, token_type: 'bearer', sub: '0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41', username: 'alice', sid: '5b1d8c3e-2f4a-4b6c-8d7e-9f0a1b2c3d4e', scope: 'users:read', exp: 1795400900, iat: 1795400000, iss: 'auth-service', aud: 'auth-service', jti: '6a0f3c2e-1d4b-4e5f-9a8b-7c6d5e4f3a2b' },
    { active: false }
  ]
})

export const OAuthErrorSchema = Type.Object({
  error: Type.String({ description: 'RFC 6749 section 5.2 error code', examples: ['invalid_grant'] }),
  error_description: Type.String()
}, { $id: 'OAuthError', title: 'OAuthError', examples: [{ error: 'invalid_grant', error_description: 'Incorrect username or password' }] })

const EXAMPLES: Record<number, { description: string, error: OAuthError }> = {
  400: {
    description: '`invalid_request`, `unsupported_grant_type`, `invalid_scope` (malformed, or not held), or `invalid_grant` for a refresh token that is unknown, used, or of an ended session',
    error: OAuthErrors.invalidRefreshToken()
  },
  401: { description: '`invalid_grant`: unknown user or wrong password (the same answer for both), or, with the right password, a disabled account; `invalid_client` (client_credentials): no, unknown or wrong client credentials', error: OAuthErrors.invalidGrant() },
  413: { description: 'Request body too large', error: OAuthErrors.payloadTooLarge(16384) },
  429: { description: '`temporarily_unavailable`: a rate limit exceeded, or (password grant) the account\'s logins are throttled after failed attempts; see Retry-After', error: OAuthErrors.rateLimited(60) },
  500: { description: '`server_error`', error: OAuthErrors.serverError() },
  503: { description: '`temporarily_unavailable`: the database does not answer, the shared rate-limit store (Redis) does not answer (this endpoint fails closed), or too many password checks are under way; see Retry-After', error: OAuthErrors.databaseUnavailable() }
}

const OAUTH_HEADERS: Record<number, Record<string, { type: string, description: string }>> = {
  401: { 'WWW-Authenticate': { type: 'string', description: '`Bearer` (`invalid_grant`), or `Basic realm="auth-service"` (`invalid_client`)' } },
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

/** The 401 of the endpoints that require client authentication (introspection): `invalid_client`. */
export const invalidClientResponse = {
  description: '`invalid_client`: no client authentication, an unknown or deleted client, or a wrong secret (one answer for all)',
  headers: { 'Cache-Control': NO_STORE_HEADER, 'WWW-Authenticate': { type: 'string', description: '`Basic realm="auth-service"`' } },
  content: { 'application/json': { schema: Type.Ref(OAuthErrorSchema), example: OAuthErrors.invalidClient().toBody() } }
}
