/// <reference path="./fastify.d.ts" />
import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import { hasScopes } from './claims.js'
import { Problems, sendProblem } from './problems.js'
import { AuthVerifier, type Outcome, type VerifierOptions } from './verifier.js'

export type { VerifiedClaims } from './claims.js'
export type { VerifierOptions, VerifierStatus } from './verifier.js'
export { AuthVerifier } from './verifier.js'

const verifierPlugin: FastifyPluginAsync<VerifierOptions> = async (fastify, options) => {
  const verifier = new AuthVerifier(options, fastify.log.child({ plugin: 'auth-verifier' }))

  const finish = (request: FastifyRequest, reply: FastifyReply, outcome: Outcome, done: (error?: Error) => void): void => {
    // Answered here rather than through the application's error handler: the same answers as the service, always.
    if (outcome.problem !== undefined) {
      sendProblem(reply, outcome.problem)
      return
    }
    request.user = outcome.claims as FastifyRequest['user']
    const scopes = request.routeOptions.config.scopes ?? []
    if (!hasScopes(outcome.claims.scope, scopes)) {
      sendProblem(reply, Problems.insufficientScope(scopes))
      return
    }
    done()
  }

  // A callback hook: no promise per request unless a new kid has to be fetched.
  const authenticate: onRequestHookHandler = (request, reply, done) => {
    const outcome = verifier.check(request.headers.authorization)
    if (outcome instanceof Promise) {
      outcome.then(o => { finish(request, reply, o, done) }, done)
    } else {
      finish(request, reply, outcome, done)
    }
  }

  fastify.decorateRequest('user', null as unknown as FastifyRequest['user'])
  fastify.decorate('authenticate', authenticate)
  fastify.decorate('authVerifier', verifier)

  // A route that names scopes is protected even if its author forgot the hook.
  fastify.addHook('onRoute', (route) => {
    if ((route.config?.scopes ?? []).length === 0) return
    const hooks = [route.onRequest ?? []].flat()
    if (!hooks.includes(authenticate)) route.onRequest = [...hooks, authenticate]
  })
  fastify.addHook('onReady', async () => { verifier.start() })
  fastify.addHook('onClose', async () => { await verifier.close() })
}

export default fp(verifierPlugin, { name: '@auth-service/fastify-verifier', fastify: '5.x' })
