import formbody from '@fastify/formbody'
import multipart from '@fastify/multipart'
import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from '@sinclair/typebox'
import { clientGone, OAuthError, OAuthErrors, type FastifyLikeError } from '../../errors.js'
import { isDatabaseUnavailable } from '../../db/availability.js'
import { logFailure } from '../../plugins/error-handler.js'
import {
  IntrospectionSchema, IntrospectRequestSchema, invalidClientResponse, NO_STORE_HEADER, oauthErrorResponses, RevokeRequestSchema,
  TokenRequestSchema, tokenResponse as tokenResponseSchema
} from '../../schemas/oauth.js'
import type { UserRow } from '../../db/schema.js'
import { audit } from '../../services/audit.js'
import { CLIENT_BASIC_SCHEME } from '../../schemas/security.js'
import { grantScope, parseScope, sessionScopes } from '../../services/scopes.js'
import type { TokenGrant } from '../../services/tokens.js'
import { introspect } from '../../services/introspection.js'
import { authenticateClient } from './client-auth.js'

const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' }

type Fields = Record<string, string | undefined>

function required (body: Fields, field: string): string {
  const value = body[field]
  if (value === undefined || value === '') throw OAuthErrors.invalidRequest(`${field} is required`)
  return value
}

/** The scope parameter's tokens; undefined when it is absent or empty; a malformed one is refused. */
function requestedScope (body: Fields): string[] | undefined {
  if (body.scope === undefined) return undefined
  const scopes = parseScope(body.scope)
  if (scopes === undefined) throw OAuthErrors.invalidScope('scope must be space-separated scope tokens (RFC 6749 section 3.3)')
  return scopes.length === 0 ? undefined : scopes
}

function granted (requested: string[] | undefined, available: string[], holder: string): string {
  const decision = grantScope(requested, available)
  if (!decision.ok) throw OAuthErrors.invalidScope(`${holder} does not hold ${decision.missing.join(' ')}`)
  return decision.scope
}

/**
 * A signal that aborts if the client goes away before its answer is sent, so that a password check still waiting for
 * a hash thread is dropped. Not the request's 'close': Node 20 emits it once the body is read; the response's
 * 'close' before it has finished means the connection went.
 */
function whileClientWaits (reply: FastifyReply): { signal: AbortSignal, done: () => void } {
  const controller = new AbortController()
  const response = reply.raw
  const onClose = (): void => { if (!response.writableFinished) controller.abort(clientGone()) }
  if (response.destroyed) onClose()
  else response.once('close', onClose)
  return { signal: controller.signal, done: () => { response.off('close', onClose) } }
}

// The media types the token endpoints take, in the order the document lists them.
const FORM_OR_JSON = ['application/x-www-form-urlencoded', 'application/json']

// Form fields only, as few as the token request has (and some to spare), none longer than a whole urlencoded body.
const multipartLimits = (bodyLimit: number) => ({ files: 0, fields: 16, parts: 16, fieldNameSize: 64, fieldSize: bodyLimit, headerPairs: 8 })

const REFRESH_KEY_PREFIX = 'refresh:'

/**
 * The fields of a multipart/form-data token request (a browser's FormData), as formbody makes those of a form: a
 * repeated field is a list, refused by validation like a repeated form field. Every way such a body can be wrong
 * (a file, too many or too long fields, a truncated or malformed body) is a 400 or 413, never a 500 or a wait.
 */
async function multipartFields (request: FastifyRequest, bodyLimit: number): Promise<Record<string, unknown>> {
  if (Number(request.headers['content-length']) > bodyLimit) throw OAuthErrors.payloadTooLarge(bodyLimit)
  const parts = request.parts()
  // A chunked body has no length to check up front: counted as it arrives, and cut off past the limit.
  const tooLarge = OAuthErrors.payloadTooLarge(bodyLimit)
  let received = 0
  const count = (chunk: Buffer): void => {
    received += chunk.length
    if (received > bodyLimit) request.raw.destroy(tooLarge)
  }
  request.raw.on('data', count)
  const fields: Record<string, unknown> = {}
  try {
    for await (const part of parts) {
      if (part.type === 'file') throw OAuthErrors.invalidRequest('multipart/form-data takes form fields only, not files')
      if (part.fieldnameTruncated || part.valueTruncated) throw tooLarge
      const previous = fields[part.fieldname]
      fields[part.fieldname] = previous === undefined ? part.value : [previous, part.value].flat()
    }
  } catch (error) {
    if (error instanceof OAuthError) throw error
    switch ((error as { code?: string }).code) {
      case 'FST_FILES_LIMIT': throw OAuthErrors.invalidRequest('multipart/form-data takes form fields only, not files')
      case 'FST_FIELDS_LIMIT':
      case 'FST_PARTS_LIMIT': throw OAuthErrors.invalidRequest('multipart/form-data has too many fields')
      // busboy's and the plugin's own: no boundary, a truncated part, a body cut short, a prototype field name.
      default: throw OAuthErrors.invalidRequest('multipart/form-data body is malformed')
    }
  } finally {
    request.raw.off('data', count)
  }
  return fields
}

const tokenRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // Form bodies are accepted here only: the rest of the API speaks JSON.
  await app.register(formbody)
  const limit = { max: app.config.RATE_LIMIT_TOKEN_MAX, timeWindow: app.config.RATE_LIMIT_WINDOW_SECONDS * 1000 }
  // Password guessing is what this limit stops: without Redis, refuse (503) rather than go unlimited.
  const failClosed = { ...limit, skipOnError: false }
  // Two budgets on one route: refreshes (a client keeping its session, not a guess) are counted apart from every other
  // grant, under their own key. Counted once the body is parsed (preValidation), when the grant type is known.
  const { RATE_LIMIT_TOKEN_MAX, RATE_LIMIT_REFRESH_MAX } = app.config
  const grantLimit = {
    ...failClosed,
    hook: 'preValidation' as const,
    keyGenerator: (request: FastifyRequest) => {
      const grantType = (request.body as Fields | undefined)?.grant_type
      return grantType === 'refresh_token' ? REFRESH_KEY_PREFIX + normalizeIP(request.ip) : normalizeIP(request.ip)
    },
    max: (_request: FastifyRequest, key: string) => key.startsWith(REFRESH_KEY_PREFIX) ? RATE_LIMIT_REFRESH_MAX : RATE_LIMIT_TOKEN_MAX
  }

  // A request without a body has no fields: refused for the first field it lacks, like an empty form.
  app.addHook('preValidation', (request, _reply, done) => {
    if (request.body === undefined) request.body = {}
    done()
  })

  // RFC 6749 section 5.2: every failure here is {error, error_description}, never a problem document.
  app.setErrorHandler((error, request, reply) => {
    const oauthError = app.errorRenderers.toOAuthError(error as FastifyLikeError)
    if (oauthError.status >= 500) logFailure(request, error, oauthError.status, isDatabaseUnavailable(error) ? 'database_unavailable' : oauthError.error)
    return reply.code(oauthError.status).headers({ ...NO_STORE, ...oauthError.headers }).send(oauthError.toBody())
  })

  function tokenResponse (user: Pick<UserRow, 'id' | 'username' | 'emailVerified'>, sessionId: string, refreshToken: string, grant: TokenGrant) {
    const { accessToken, expiresIn } = app.tokens.issue(user, sessionId, grant)
    return { access_token: accessToken, token_type: 'bearer' as const, expires_in: expiresIn, scope: grant.scope, refresh_token: refreshToken }
  }

  async function passwordGrant (request: FastifyRequest, reply: FastifyReply, body: Fields) {
    const username = required(body, 'username')
    const password = required(body, 'password')
    const requested = requestedScope(body)
    const login = await app.loginThrottle.guard(username, request.ip, async () => {
      const client = whileClientWaits(reply)
      try {
        return await app.users.authenticate(username, password, client.signal)
      } finally {
        client.done()
      }
    })
    if (!login.ok && login.reason === 'throttled') {
      app.metrics.logins.inc({ outcome: 'throttled' })
      audit(request, 'login_throttled', { retry_after_seconds: login.retryAfterSeconds })
      throw OAuthErrors.loginThrottled(login.retryAfterSeconds)
    }
    if (!login.ok) {
      // One outcome for a wrong password and an unknown user: metrics must not tell which accounts exist (the audit log,
      // which is not public, keeps the difference).
      app.metrics.logins.inc({ outcome: login.reason === 'disabled' ? 'disabled' : 'invalid_credentials' })
      audit(request, 'login_failed', { user_id: login.userId, reason: login.reason })
      throw login.reason === 'disabled' ? OAuthErrors.accountDisabled() : OAuthErrors.invalidGrant()
    }
    const { user } = login
    if (app.config.REQUIRE_VERIFIED_EMAIL && !user.emailVerified) {
      app.metrics.logins.inc({ outcome: 'unverified' })
      audit(request, 'login_failed', { user_id: user.id, reason: 'email_not_verified' })
      // A fresh link (at most one a minute), since the user cannot sign in to ask for one.
      app.inBackground('verification email', async () => await app.accounts.sendVerification(user, { throttle: true }))
      throw OAuthErrors.emailNotVerified()
    }
    const grants = await app.users.grantsOf(user.id)
    const scope = granted(requested, grants.scopes, 'The user')
    const meta = { userAgent: request.headers['user-agent'], ipAddress: request.ip }
    const { session, refreshToken } = await app.sessions.open(user.id, meta, requested === undefined ? null : scope)
    app.metrics.logins.inc({ outcome: 'success' })
    audit(request, 'login_succeeded', { user_id: user.id, session_id: session.id })
    return tokenResponse(user, session.id, refreshToken, { scope, roles: grants.roles })
  }

  async function refreshGrant (request: FastifyRequest, body: Fields) {
    const presented = required(body, 'refresh_token')
    const requested = requestedScope(body)
    if (requested !== undefined) {
      // Judged before the rotation: a refused scope must not cost the client its refresh token.
      const session = await app.sessions.findByRefreshToken(presented)
      if (session !== undefined) granted(requested, sessionScopes(session.scope, (await app.users.grantsOf(session.userId)).scopes), 'The session')
    }
    const outcome = await app.sessions.refresh(presented, { userAgent: request.headers['user-agent'], ipAddress: request.ip })
    if (!outcome.ok) {
      app.metrics.refreshes.inc({ outcome: outcome.reason })
      if (outcome.reason === 'reused') {
        app.metrics.refreshReuse.inc()
        audit(request, 'refresh_token_reuse', { session_id: outcome.sessionId })
      }
      throw OAuthErrors.invalidRefreshToken(outcome.reason === 'raced'
        ? 'Refresh token was already used by a concurrent request'
        : 'Refresh token is invalid, expired or revoked')
    }
    app.metrics.refreshes.inc({ outcome: 'success' })
    audit(request, 'token_refreshed', { user_id: outcome.user.id, session_id: outcome.session.id })
    // Granted scopes take effect here; a session opened for named scopes keeps to those the user still holds.
    const grants = await app.users.grantsOf(outcome.user.id)
    const scope = granted(requested, sessionScopes(outcome.session.scope, grants.scopes), 'The session')
    return tokenResponse(outcome.user, outcome.session.id, outcome.refreshToken, { scope, roles: grants.roles })
  }

  // RFC 6749 section 4.4: a service's own token, with no session and no refresh token.
  async function clientCredentialsGrant (request: FastifyRequest, body: Fields) {
    const client = await authenticateClient(app, request, body)
    const scope = granted(requestedScope(body), client.scopes, 'The client')
    const { accessToken, expiresIn } = app.tokens.issueForClient(client.id, scope)
    audit(request, 'client_token_issued', { client_id: client.id })
    return { access_token: accessToken, token_type: 'bearer' as const, expires_in: expiresIn, scope }
  }

  // multipart/form-data (a browser's FormData, which FastAPI's OAuth2 form takes) at this route only.
  await app.register(async (tokenScope: typeof app) => {
    await tokenScope.register(multipart, { limits: multipartLimits(app.config.BODY_LIMIT) })
    tokenScope.addHook('preValidation', async (request) => {
      if (request.isMultipart()) request.body = await multipartFields(request, app.config.BODY_LIMIT)
    })

    tokenScope.post('/token', {
      config: { rateLimit: grantLimit },
      schema: {
        tags: ['auth'],
        summary: 'Get tokens: OAuth2 password grant, refresh-token rotation, or client credentials',
        description: 'RFC 6749 sections 4.3, 4.4 and 6. Send `application/x-www-form-urlencoded` (as OAuth2 clients do), JSON, or ' +
          '`multipart/form-data` (a browser\'s FormData; fields only, no files) with the same fields. Each password login opens ' +
          'a session; each refresh retires the refresh token it was given. Refreshes are rate-limited apart from the other ' +
          'grants (RATE_LIMIT_REFRESH_MAX against RATE_LIMIT_TOKEN_MAX per window and address). ' +
          'After LOGIN_THROTTLE_MAX_FAILURES failed logins of one account (known or not) within the window, its password ' +
          'logins are answered 429 with a growing Retry-After, unchecked, except from an address it logged in from recently. ' +
          '`client_credentials` (a registered service client) needs client authentication: HTTP Basic, or `client_id` and ' +
          '`client_secret` in the body; it answers no refresh token; a wrong or unknown client is 401 `invalid_client`. ' +
          'The password and refresh grants accept and ignore HTTP Basic and `client_id`.',
        operationId: 'createToken',
        security: [],
        consumes: [...FORM_OR_JSON, 'multipart/form-data'],
        body: TokenRequestSchema,
        response: { 200: tokenResponseSchema, ...oauthErrorResponses(400, 401, 413, 429, 500, 503) }
      }
    }, async (request, reply) => {
      const body: Fields = request.body ?? {}
      const grantType = body.grant_type ?? 'password'
      let response
      if (grantType === 'password') response = await passwordGrant(request, reply, body)
      else if (grantType === 'refresh_token') response = await refreshGrant(request, body)
      else if (grantType === 'client_credentials') response = await clientCredentialsGrant(request, body)
      else throw OAuthErrors.unsupportedGrantType()
      return reply.headers(NO_STORE).send(response)
    })
  })

  app.post('/revoke', {
    config: { rateLimit: limit },
    schema: {
      tags: ['auth'],
      summary: 'Revoke a token (RFC 7009): ends the session it belongs to',
      description: 'Answers 200 for unknown, expired and already revoked tokens alike (RFC 7009 section 2.2). ' +
        'Access tokens of the session are refused from then on, on every instance, within a second.',
      operationId: 'revokeToken',
      security: [],
      consumes: FORM_OR_JSON,
      body: RevokeRequestSchema,
      response: {
        200: {
          description: 'Revoked, or nothing to revoke',
          headers: { 'Cache-Control': NO_STORE_HEADER },
          content: { 'application/json': { schema: Type.Object({}, { additionalProperties: false, examples: [{}] }) } }
        },
        ...oauthErrorResponses(400, 413, 429, 500, 503)
      }
    }
  }, async (request, reply) => {
    const token = required(request.body ?? {}, 'token')
    // The hint is only a hint: both kinds are looked for, whatever it says.
    const sessionId = await app.sessions.sessionOfRefreshToken(token) ?? app.tokens.sessionOf(token)
    if (sessionId !== undefined && (await app.sessions.end({ sessionId }, 'revoked')).length > 0) {
      audit(request, 'token_revoked', { session_id: sessionId })
    }
    return reply.headers(NO_STORE).send({})
  })

  app.post('/introspect', {
    schema: {
      tags: ['auth'],
      summary: 'Introspect an access token (RFC 7662): whether it is active, and its claims',
      description: 'For services that cannot verify JWTs themselves. The caller authenticates as any registered service ' +
        'client (HTTP Basic, or `client_id` and `client_secret` in the body); without that, 401 `invalid_client`. ' +
        'Answers exactly `{"active": false}` for every token a protected route would refuse: expired, malformed, ' +
        'signed by another key, of an ended session or a deleted client; refresh tokens too.',
      operationId: 'introspectToken',
      security: [{ [CLIENT_BASIC_SCHEME]: [] }],
      consumes: FORM_OR_JSON,
      body: IntrospectRequestSchema,
      response: {
        200: {
          description: 'The token\'s state',
          headers: { 'Cache-Control': NO_STORE_HEADER },
          content: { 'application/json': { schema: IntrospectionSchema } }
        },
        401: invalidClientResponse,
        ...oauthErrorResponses(400, 413, 429, 500, 503)
      }
    }
  }, async (request, reply) => {
    const body: Fields = request.body ?? {}
    await authenticateClient(app, request, body)
    const token = required(body, 'token')
    return reply.headers(NO_STORE).send(introspect(app.tokens, app.endedSessions, token))
  })
}

export default tokenRoutes
