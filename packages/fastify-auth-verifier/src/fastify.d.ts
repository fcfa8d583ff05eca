// The plugin's decorators, typed for every Fastify instance of a program that imports the plugin. A declaration file,
// as a published build's would be: a program that also has @fastify/jwt (which types request.user its own way)
// still compiles with skipLibCheck, whichever declaration wins.
import type { onRequestHookHandler } from 'fastify'
import type { VerifiedClaims } from './claims.js'
import type { AuthVerifier } from './verifier.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller's verified claims, on routes behind `authenticate`. */
    user: VerifiedClaims
  }
  interface FastifyInstance {
    /** onRequest hook: verifies the bearer token, refuses ended sessions, checks the route's `config.scopes`. */
    authenticate: onRequestHookHandler
    authVerifier: AuthVerifier
  }
  interface FastifyContextConfig {
    /** Scopes a route needs (all of them); declaring them also puts the route behind `authenticate`. */
    scopes?: readonly string[]
  }
}
