/** The claims of an access token the plugin accepted (auth-service's RFC 9068 profile). */
export interface VerifiedClaims {
  /** The user's id, or a service client's id (then equal to client_id). */
  sub: string
  /** The session the token belongs to (a service client's id for client tokens): what logout ends. */
  sid: string
  iss: string
  aud: string | string[]
  exp: number
  iat: number
  nbf?: number
  jti: string
  /** Space-delimited granted scopes. */
  scope?: string
  roles?: string[]
  /** Users only. */
  preferred_username?: string
  /** Service clients only (client_credentials). */
  client_id?: string
  email_verified?: boolean
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

const optional = (value: unknown, check: (v: unknown) => boolean): boolean => value === undefined || check(value)
const isString = (v: unknown): v is string => typeof v === 'string'

/** The same claim types the service requires of its own tokens (src/services/tokens.ts, AccessClaimsSchema). */
export function isVerifiedClaims (value: unknown): value is VerifiedClaims {
  if (value === null || typeof value !== 'object') return false
  const c = value as Record<string, unknown>
  return isString(c.sub) && UUID.test(c.sub) &&
    isString(c.sid) && UUID.test(c.sid) &&
    isString(c.iss) &&
    (isString(c.aud) || (Array.isArray(c.aud) && c.aud.every(isString))) &&
    Number.isInteger(c.exp) && Number.isInteger(c.iat) && optional(c.nbf, Number.isInteger) &&
    isString(c.jti) && c.jti.length > 0 &&
    optional(c.scope, isString) &&
    optional(c.roles, v => Array.isArray(v) && v.every(isString)) &&
    optional(c.preferred_username, isString) &&
    optional(c.client_id, v => isString(v) && UUID.test(v)) &&
    optional(c.email_verified, v => typeof v === 'boolean') &&
    // A user's token names the user; a service client's names the client, which stands for its session too.
    (c.client_id === undefined
      ? c.preferred_username !== undefined
      : c.preferred_username === undefined && c.sub === c.client_id && c.sid === c.client_id)
}

/** Whether `granted` (space-delimited) holds every one of `needed`. */
export function hasScopes (granted: string | undefined, needed: readonly string[]): boolean {
  if (needed.length === 0) return true
  if (granted === undefined || granted === '') return false
  const held = granted.split(' ')
  return needed.every(scope => held.includes(scope))
}
