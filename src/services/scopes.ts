// RFC 6749 section 3.3: scope = scope-token *( SP scope-token ), scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/

/** The service's own administrative scopes, held by the built-in `admin` role. */
export const ADMIN_SCOPES = ['users:read', 'users:write', 'roles:write', 'clients:read', 'clients:write'] as const

/** Scopes the service itself checks that no role needs to define: service clients may hold them. */
export const SERVICE_SCOPES = ['sessions:ended'] as const

export const isScopeToken = (token: string): boolean => SCOPE_TOKEN.test(token)

/**
 * The scope tokens of a `scope` parameter, or undefined when it is malformed. Empty or only spaces reads as no
 * request at all: FastAPI's OAuth2PasswordRequestForm sends `scope=` by default.
 */
export function parseScope (scope: string): string[] | undefined {
  const tokens = scope.split(' ').filter(t => t !== '')
  if (!tokens.every(isScopeToken)) return undefined
  return [...new Set(tokens)]
}

/** Space-delimited, sorted, without repeats: the form tokens, token responses and sessions carry. */
export const formatScope = (scopes: Iterable<string>): string => [...new Set(scopes)].sort().join(' ')

export function hasScopes (granted: string | undefined, needed: readonly string[]): boolean {
  if (needed.length === 0) return true
  if (granted === undefined || granted === '') return false
  const held = granted.split(' ')
  return needed.every(scope => held.includes(scope))
}

export type ScopeDecision = { ok: true, scope: string } | { ok: false, missing: string[] }

/**
 * What a token gets: the requested scopes when every one is `available`, or every available scope when none was
 * asked for (RFC 6749 section 3.3 lets the server choose the default).
 */
export function grantScope (requested: string[] | undefined, available: Iterable<string>): ScopeDecision {
  const offered = new Set(available)
  if (requested === undefined || requested.length === 0) return { ok: true, scope: formatScope(offered) }
  const missing = requested.filter(s => !offered.has(s))
  return missing.length > 0 ? { ok: false, missing } : { ok: true, scope: formatScope(requested) }
}

/** What a session may carry now: the scopes it was opened for that the user still holds, or all the user holds. */
export function sessionScopes (sessionScope: string | null, userScopes: string[]): string[] {
  if (sessionScope === null) return userScopes
  const asked = new Set(sessionScope.split(' '))
  return userScopes.filter(s => asked.has(s))
}
