import { DatabaseUnavailable } from '../db/availability.js'
import { ProblemError } from '../errors.js'
import type { EndedSessions } from './ended-sessions.js'
import type { AccessClaims, TokenService } from './tokens.js'

/** RFC 7662 section 2.2: the claims of an active token, or `{ active: false }` and nothing else. */
export type Introspection =
  | { active: false }
  | {
    active: true
    token_type: 'bearer'
    sub: string
    client_id?: string
    username?: string
    sid: string
    scope?: string
    exp: number
    iat: number
    iss: string
    aud: string | string[]
    jti: string
  }

const INACTIVE = { active: false } as const

/**
 * Whether an access token would be accepted here now: the same checks as a protected route (signature, claims, expiry,
 * its session or client not ended). Refresh tokens are opaque to resource servers and answered inactive.
 */
export function introspect (tokens: TokenService, ended: EndedSessions, token: string): Introspection {
  let claims: AccessClaims
  try {
    claims = tokens.verify(`Bearer ${token}`)
  } catch (error) {
    if (error instanceof ProblemError) return INACTIVE
    throw error
  }
  if (ended.has(claims.sid)) return INACTIVE
  // Like the auth hook: not re-read lately (the database is out), an end elsewhere may have been missed.
  if (!ended.current) throw new DatabaseUnavailable('ended sessions not re-read lately')
  return {
    active: true,
    token_type: 'bearer',
    sub: claims.sub,
    ...(claims.client_id !== undefined ? { client_id: claims.client_id } : {}),
    ...(claims.preferred_username !== undefined ? { username: claims.preferred_username } : {}),
    sid: claims.sid,
    ...(claims.scope !== undefined ? { scope: claims.scope } : {}),
    exp: claims.exp,
    iat: claims.iat,
    iss: claims.iss,
    aud: claims.aud,
    jti: claims.jti
  }
}
