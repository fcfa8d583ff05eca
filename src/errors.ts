import { STATUS_CODES } from 'node:http'
import { DATABASE_RETRY_AFTER_SECONDS, isDatabaseUnavailable } from './db/availability.js'

export interface FieldError {
  field: string
  message: string
}

/** An RFC 9457 problem: every error outside the token endpoint is answered as one of these. */
export class ProblemError extends Error {
  constructor (
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
    readonly errors?: FieldError[]
  ) {
    super(detail)
    this.name = 'ProblemError'
  }

  toBody (): ProblemBody {
    return {
      type: 'about:blank',
      title: STATUS_CODES[this.status] ?? 'Error',
      status: this.status,
      detail: this.detail,
      code: this.code,
      ...(this.errors !== undefined ? { errors: this.errors } : {})
    }
  }
}

export interface ProblemBody {
  type: string
  title: string
  status: number
  detail: string
  code: string
  errors?: FieldError[]
}

// RFC 6750 section 3: a request without credentials gets a bare challenge, a bad token an error code.
const bearerChallenge = (description: string): string =>
  `Bearer error="invalid_token", error_description="${description}"`

export const Problems = {
  validation: (errors: FieldError[]) =>
    new ProblemError(400, 'validation_error', fieldErrorsDetail(errors), {}, errors),
  badRequest: (detail: string) => new ProblemError(400, 'bad_request', detail),
  notAuthenticated: () => new ProblemError(401, 'not_authenticated', 'Not authenticated', { 'www-authenticate': 'Bearer' }),
  invalidToken: (detail = 'Could not validate credentials') =>
    new ProblemError(401, 'invalid_token', detail, { 'www-authenticate': bearerChallenge(detail) }),
  // A code of its own, so that a client knows to refresh without parsing prose; the challenge stays RFC 6750's invalid_token.
  tokenExpired: () =>
    new ProblemError(401, 'token_expired', 'Token has expired', { 'www-authenticate': bearerChallenge('Token has expired') }),
  // RFC 6750 section 3.1: a valid token without the scope the route needs.
  insufficientScope: (scopes: readonly string[]) =>
    new ProblemError(403, 'insufficient_scope', `This operation needs the scope ${scopes.join(' ')}`, {
      'www-authenticate': `Bearer error="insufficient_scope", scope="${scopes.join(' ')}"`
    }),
  notFound: (detail: string) => new ProblemError(404, 'not_found', detail),
  userExists: () => new ProblemError(409, 'user_exists', 'Username or email already registered'),
  lastAdmin: () => new ProblemError(409, 'last_admin', 'The last administrator cannot be demoted, disabled or deleted'),
  builtInRole: () => new ProblemError(409, 'built_in_role', 'The built-in roles user and admin cannot be deleted'),
  adminScopes: () => new ProblemError(409, 'admin_scopes', 'The admin role keeps the scopes users:read, users:write, roles:write, clients:read and clients:write'),
  payloadTooLarge: (limit: number) => new ProblemError(413, 'payload_too_large', `Request body is larger than ${limit} bytes`),
  unsupportedMediaType: (detail: string) => new ProblemError(415, 'unsupported_media_type', detail),
  rateLimited: (seconds: number) =>
    new ProblemError(429, 'rate_limited', `Too many requests; retry in ${seconds} seconds`, { 'retry-after': String(seconds) }),
  // The account's login throttle (services/login-throttle.ts): the password was not checked.
  loginThrottled: (seconds: number) =>
    new ProblemError(429, 'login_throttled', `Too many failed logins for this account; retry in ${seconds} seconds`, { 'retry-after': String(seconds) }),
  internal: () => new ProblemError(500, 'internal_error', 'Internal Server Error'),
  // A route whose rate limit fails closed, while the shared counter store (Redis) does not answer.
  rateLimitUnavailable: () =>
    new ProblemError(503, 'rate_limit_unavailable', 'Rate limiting is unavailable; retry shortly', { 'retry-after': '1' }),
  busy: () => new ProblemError(503, 'busy', 'Too many password checks under way; retry shortly', { 'retry-after': '1' }),
  // SESSION_FEED_MAX_SUBSCRIBERS streams are open on this instance: another instance, or this one later, takes it.
  feedFull: () => new ProblemError(503, 'feed_full', 'Too many subscribers to the ended-session feed on this instance; retry shortly', { 'retry-after': '5' }),
  // Before the service listens (src/startup/boot-server.ts): the port is taken, the database not yet open.
  starting: () => new ProblemError(503, 'starting', 'The service is starting; retry shortly', { 'retry-after': '1' }),
  // PostgreSQL does not answer (down, frozen, refusing connections): a bounded wait, then this (src/db/availability.ts).
  databaseUnavailable: () =>
    new ProblemError(503, 'database_unavailable', 'The database is unavailable; retry shortly', { 'retry-after': String(DATABASE_RETRY_AFTER_SECONDS) }),
  // A reset or verification token from an email: bad, used and expired look the same (nothing to probe).
  invalidEmailToken: () => new ProblemError(400, 'invalid_token', 'The link is invalid, expired or already used'),
  // Production without SMTP_URL: the routes that send email cannot do their job (docs/email.md).
  emailUnavailable: () =>
    new ProblemError(503, 'email_unavailable', 'Sending email is not configured on this service', { 'retry-after': '3600' })
}

/** An RFC 6749 section 5.2 error: the token endpoint answers only these. */
export class OAuthError extends Error {
  constructor (
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly headers: Record<string, string> = {}
  ) {
    super(description)
    this.name = 'OAuthError'
  }

  toBody (): OAuthErrorBody {
    return { error: this.error, error_description: this.description }
  }
}

export interface OAuthErrorBody {
  error: string
  error_description: string
}

export const OAuthErrors = {
  invalidRequest: (description: string) => new OAuthError(400, 'invalid_request', description),
  unsupportedGrantType: () => new OAuthError(400, 'unsupported_grant_type', 'Supported grant types: password, refresh_token, client_credentials'),
  // RFC 6749 section 5.2: no, unknown or wrong client credentials. Always a Basic challenge (RFC 9110 section 11.6.1
  // wants one on every 401); the same answer for an unknown client and a wrong secret.
  invalidClient: () =>
    new OAuthError(401, 'invalid_client', 'Client authentication failed', { 'www-authenticate': 'Basic realm="auth-service"' }),
  // RFC 6749 section 5.2: a bad refresh token is a 400 invalid_grant.
  invalidRefreshToken: (description = 'Refresh token is invalid, expired or revoked') => new OAuthError(400, 'invalid_grant', description),
  // One answer for an unknown user and a wrong password, so the endpoint does not tell which users exist.
  invalidGrant: () =>
    new OAuthError(401, 'invalid_grant', 'Incorrect username or password', { 'www-authenticate': 'Bearer' }),
  // Said only to someone who gave the right password.
  accountDisabled: () => new OAuthError(401, 'invalid_grant', 'Account is disabled', { 'www-authenticate': 'Bearer' }),
  // REQUIRE_VERIFIED_EMAIL, after the right password only: a guesser learns nothing from it.
  emailNotVerified: () => new OAuthError(401, 'invalid_grant', 'Email address is not verified', { 'www-authenticate': 'Bearer' }),
  // RFC 6749 section 5.2: malformed, or more than the user (or, on a refresh, the session) holds.
  invalidScope: (description: string) => new OAuthError(400, 'invalid_scope', description),
  payloadTooLarge: (limit: number) => new OAuthError(413, 'invalid_request', `Request body is larger than ${limit} bytes`),
  rateLimited: (seconds: number) =>
    new OAuthError(429, 'temporarily_unavailable', `Too many requests; retry in ${seconds} seconds`, { 'retry-after': String(seconds) }),
  // The same for a known and an unknown account, so that it tells nothing about which exist.
  loginThrottled: (seconds: number) =>
    new OAuthError(429, 'temporarily_unavailable', `Too many failed logins for this account; retry in ${seconds} seconds`, { 'retry-after': String(seconds) }),
  serverError: () => new OAuthError(500, 'server_error', 'Internal Server Error'),
  // A token route whose rate limit fails closed, while the shared counter store (Redis) does not answer.
  rateLimitUnavailable: () =>
    new OAuthError(503, 'temporarily_unavailable', 'Rate limiting is unavailable; retry shortly', { 'retry-after': '1' }),
  // The password hash queue is full (PASSWORD_HASH_QUEUE_MAX): RFC 6749 section 5.2's temporarily_unavailable.
  busy: () => new OAuthError(503, 'temporarily_unavailable', 'Too many password checks under way; retry shortly', { 'retry-after': '1' }),
  databaseUnavailable: () =>
    new OAuthError(503, 'temporarily_unavailable', 'The database is unavailable; retry shortly', { 'retry-after': String(DATABASE_RETRY_AFTER_SECONDS) })
}

/** What the rate limiter's store raises when Redis does not answer in time (see plugins/rate-limit.ts). */
export const RATE_LIMIT_UNAVAILABLE = 'RATE_LIMIT_UNAVAILABLE'

/**
 * The client went away before its answer (nginx's 499): what is sent reaches nobody, and as a 4xx it is not logged
 * as a failure of ours. The reason a request's abort signal carries (routes/auth/token.ts).
 */
export const clientGone = (): Error => Object.assign(new Error('The client closed the connection'), { statusCode: 499 })

/** Every refused input in one sentence: "username: must be ...; email: must be ...". */
export const fieldErrorsDetail = (errors: FieldError[]): string => errors.map(e => `${e.field}: ${e.message}`).join('; ')

export interface AjvError {
  instancePath?: string
  schemaPath?: string
  keyword?: string
  message?: string
  params?: Record<string, unknown>
}

/** What a field's schema may say instead of the generic words: `x-error-message` in its TypeBox options. */
export type FieldMessageOf = (error: AjvError) => string | undefined

/**
 * Turns Fastify's validation errors (all of them: ajv's allErrors) into one plain-words entry per field, in the order
 * found. The words are the field schema's own `x-error-message`, else ones made from the keyword: never ajv's message,
 * which quotes regular expressions.
 */
export function fieldErrors (validation: AjvError[], context: string | undefined, messageOf?: FieldMessageOf): FieldError[] {
  const byField = new Map<string, string>()
  for (const v of validation) {
    const path = (v.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.')
    const missing = v.keyword === 'required' ? String(v.params?.missingProperty ?? '') : ''
    const field = [path, missing].filter(Boolean).join('.') || (context ?? 'body')
    // A field broken several ways (too short and a wrong character) is one entry: the first reason found.
    if (byField.has(field)) continue
    // A schema's own words say what a valid value looks like; a value of the wrong type is told the type.
    byField.set(field, v.keyword === 'required' ? 'is required' : v.keyword === 'type' ? plainWords(v) : (messageOf?.(v) ?? plainWords(v)))
  }
  return [...byField].map(([field, message]) => ({ field, message }))
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string', number: 'a number', integer: 'a whole number', boolean: 'true or false', object: 'an object', array: 'a list', null: 'null'
}
const FORMAT_WORDS: Record<string, string> = { email: 'an email address', uuid: 'a UUID', 'date-time': 'a date and time (RFC 3339)', uri: 'a URI' }

/** ajv's error in words a person can read, from its keyword and parameters only. */
function plainWords (v: AjvError): string {
  const p = v.params ?? {}
  const limit = Number(p.limit)
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`
  switch (v.keyword) {
    case 'type': return `must be ${String(p.type).split(',').map(type => TYPE_WORDS[type] ?? type).join(' or ')}`
    case 'minLength': return limit === 1 ? 'must not be empty' : `must be at least ${plural(limit, 'character')}`
    case 'maxLength': return `must be at most ${plural(limit, 'character')}`
    case 'minimum': return `must be at least ${limit}`
    case 'maximum': return `must be at most ${limit}`
    case 'exclusiveMinimum': return `must be more than ${limit}`
    case 'exclusiveMaximum': return `must be less than ${limit}`
    case 'minItems': return limit === 1 ? 'must not be empty' : `must hold at least ${plural(limit, 'item')}`
    case 'maxItems': return `must hold at most ${plural(limit, 'item')}`
    case 'uniqueItems': return 'must not repeat an item'
    case 'format': return `must be ${FORMAT_WORDS[String(p.format)] ?? `a valid ${String(p.format)}`}`
    case 'enum': return `must be one of ${(p.allowedValues as unknown[] ?? []).map(String).join(', ')}`
    case 'const': return `must be ${String(p.allowedValue)}`
    case 'additionalProperties': return `must not have the field ${String(p.additionalProperty)}`
    // A pattern is never quoted: a regular expression is not an explanation.
    case 'pattern': return 'is not in the expected format'
    default: return 'is invalid'
  }
}

export interface FastifyLikeError {
  code?: string
  statusCode?: number
  message: string
  validation?: AjvError[]
  validationContext?: string
  /** The validation errors in plain words, made where the route's schema is known (plugins/error-handler.ts). */
  fieldErrors?: FieldError[]
}

/** What went wrong, whatever raised it: decided once, then rendered as a problem or as an OAuth error. */
export type ErrorClass =
  | { kind: 'problem', problem: ProblemError }
  | { kind: 'oauth', error: OAuthError }
  | { kind: 'rate_limit_unavailable' }
  | { kind: 'busy' }
  | { kind: 'database_unavailable' }
  | { kind: 'validation', errors: FieldError[] }
  | { kind: 'body_too_large' }
  | { kind: 'unsupported_media_type' }
  | { kind: 'empty_body' }
  | { kind: 'rate_limited', retryAfterSeconds: number }
  | { kind: 'invalid_json' }
  | { kind: 'client_error', status: number, message: string }
  | { kind: 'internal' }

/**
 * Classifies whatever a request raised (our errors, Fastify's, a plugin's). 4xx from a library keep their status
 * with a message we wrote; anything else is internal, with nothing leaked.
 */
export function classifyError (error: FastifyLikeError): ErrorClass {
  if (error instanceof ProblemError) return { kind: 'problem', problem: error }
  if (error instanceof OAuthError) return { kind: 'oauth', error }
  if (error.code === RATE_LIMIT_UNAVAILABLE) return { kind: 'rate_limit_unavailable' }
  if (error.code === 'HASH_POOL_BUSY') return { kind: 'busy' }
  // Before anything else: drizzle's wrapper of a driver error looks like any other internal error.
  if (isDatabaseUnavailable(error)) return { kind: 'database_unavailable' }
  if (error.validation !== undefined) {
    return { kind: 'validation', errors: error.fieldErrors ?? fieldErrors(error.validation, error.validationContext) }
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return { kind: 'body_too_large' }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return { kind: 'unsupported_media_type' }
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return { kind: 'empty_body' }
  }
  const status = error.statusCode ?? 500
  if (status === 429) return { kind: 'rate_limited', retryAfterSeconds: retryAfterSeconds(error) }
  if (status >= 400 && status < 500) {
    // JSON.parse messages quote the body, which may hold a password: never echo them.
    if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError) return { kind: 'invalid_json' }
    const known = error.code?.startsWith('FST_') === true
    return { kind: 'client_error', status, message: known ? error.message : (STATUS_CODES[status] ?? 'Bad Request') }
  }
  return { kind: 'internal' }
}

/** The two wire formats of an error: RFC 9457 problems everywhere, RFC 6749 errors at the token endpoints. */
export interface ErrorRenderers {
  toProblem: (error: FastifyLikeError) => ProblemError
  toOAuthError: (error: FastifyLikeError) => OAuthError
}

export function errorRenderers (bodyLimit: number): ErrorRenderers {
  return {
    toProblem: (error) => {
      const c = classifyError(error)
      switch (c.kind) {
        case 'problem': return c.problem
        case 'rate_limit_unavailable': return Problems.rateLimitUnavailable()
        case 'busy': return Problems.busy()
        case 'database_unavailable': return Problems.databaseUnavailable()
        case 'validation': return Problems.validation(c.errors)
        case 'body_too_large': return Problems.payloadTooLarge(bodyLimit)
        case 'unsupported_media_type': return Problems.unsupportedMediaType('Content-Type must be application/json')
        case 'empty_body': return Problems.badRequest('Request body must not be empty')
        case 'rate_limited': return Problems.rateLimited(c.retryAfterSeconds)
        case 'invalid_json': return Problems.badRequest('Request body is not valid JSON')
        case 'oauth': return c.error.status < 500 ? new ProblemError(c.error.status, 'bad_request', c.error.description) : Problems.internal()
        case 'client_error': return new ProblemError(c.status, 'bad_request', c.message)
        case 'internal': return Problems.internal()
      }
    },
    toOAuthError: (error) => {
      const c = classifyError(error)
      switch (c.kind) {
        case 'oauth': return c.error
        case 'rate_limit_unavailable': return OAuthErrors.rateLimitUnavailable()
        case 'busy': return OAuthErrors.busy()
        case 'database_unavailable': return OAuthErrors.databaseUnavailable()
        case 'validation': return OAuthErrors.invalidRequest(fieldErrorsDetail(c.errors))
        case 'body_too_large': return OAuthErrors.payloadTooLarge(bodyLimit)
        case 'unsupported_media_type': return OAuthErrors.invalidRequest('Content-Type must be application/x-www-form-urlencoded or application/json')
        case 'empty_body': return OAuthErrors.invalidRequest('Request body must not be empty')
        case 'rate_limited': return OAuthErrors.rateLimited(c.retryAfterSeconds)
        case 'invalid_json': return OAuthErrors.invalidRequest('Request body is not valid JSON')
        case 'problem': return c.problem.status < 500 ? OAuthErrors.invalidRequest(c.problem.detail) : OAuthErrors.serverError()
        case 'client_error': return OAuthErrors.invalidRequest(c.message)
        case 'internal': return OAuthErrors.serverError()
      }
    }
  }
}

function retryAfterSeconds (error: FastifyLikeError): number {
  const ttl = (error as { ttl?: unknown }).ttl
  return typeof ttl === 'number' ? Math.max(1, Math.ceil(ttl / 1000)) : 60
}
