import { STATUS_CODES } from 'node:http'
import type { FastifyReply } from 'fastify'

/** An RFC 9457 problem as auth-service answers it: same body, same headers. */
export interface Problem {
  status: number
  code: string
  detail: string
  headers: Record<string, string>
}

// RFC 6750 section 3: a request without credentials gets a bare challenge, a bad token an error code.
const invalidToken = (detail: string, code = 'invalid_token'): Problem => ({
  status: 401,
  code,
  detail,
  headers: { 'www-authenticate': `Bearer error="invalid_token", error_description="${detail}"` }
})

export const RETRY_AFTER_SECONDS = 5

export const Problems = {
  notAuthenticated: (): Problem => ({ status: 401, code: 'not_authenticated', detail: 'Not authenticated', headers: { 'www-authenticate': 'Bearer' } }),
  invalidToken: (): Problem => invalidToken('Could not validate credentials'),
  // A code of its own (a client refreshes), under RFC 6750's invalid_token challenge.
  tokenExpired: (): Problem => invalidToken('Token has expired', 'token_expired'),
  sessionEnded: (): Problem => invalidToken('Session has ended'),
  // RFC 6750 section 3.1.
  insufficientScope: (scopes: readonly string[]): Problem => ({
    status: 403,
    code: 'insufficient_scope',
    detail: `This operation needs the scope ${scopes.join(' ')}`,
    headers: { 'www-authenticate': `Bearer error="insufficient_scope", scope="${scopes.join(' ')}"` }
  }),
  // Fail closed: the keys, or the sessions ended lately, are not known, so a valid-looking token may not be.
  unavailable: (): Problem => ({
    status: 503,
    code: 'verifier_unavailable',
    detail: 'The auth service has not been heard from lately; retry shortly',
    headers: { 'retry-after': String(RETRY_AFTER_SECONDS) }
  })
}

export function sendProblem (reply: FastifyReply, problem: Problem): void {
  reply.code(problem.status).headers(problem.headers).type('application/problem+json').send({
    type: 'about:blank',
    title: STATUS_CODES[problem.status] ?? 'Error',
    status: problem.status,
    detail: problem.detail,
    code: problem.code
  })
}
