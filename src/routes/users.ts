import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Problems } from '../errors.js'
import { problemResponses } from '../schemas/problem.js'
import { UserSchema } from '../schemas/user.js'
import { toPublicUser } from '../services/users.js'
import { OAUTH2_SCHEME } from '../plugins/swagger.js'

const userRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // Every route in this plugin is protected. Added per route from onRoute so that it runs after the rate limiter's
  // hook (which is added the same way, earlier): floods of bad tokens are counted like any other request.
  app.addHook('onRoute', (route) => {
    route.onRequest = [...[route.onRequest ?? []].flat(), app.authenticate]
  })

  app.get('/me', {
    schema: {
      tags: ['users'],
      summary: 'The signed-in user',
      operationId: 'getCurrentUser',
      security: [{ [OAUTH2_SCHEME]: [] }],
      response: { 200: Type.Ref(UserSchema), ...problemResponses(401, 429, 500) }
    }
  }, async (request) => {
    const user = await app.users.findById(request.user.sub)
    // A valid token of a user who no longer exists proves nothing.
    if (user === undefined) throw Problems.invalidToken()
    return toPublicUser(user)
  })
}

export default userRoutes
