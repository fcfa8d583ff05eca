import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Problems } from '../../errors.js'
import { problemResponses } from '../../schemas/problem.js'
import { RegisterBodySchema, toUser, UserSchema } from '../../schemas/user.js'
import { audit } from '../../services/audit.js'

const registerRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/register', {
    config: { rateLimit: { max: app.config.RATE_LIMIT_REGISTER_MAX, timeWindow: app.config.RATE_LIMIT_WINDOW_SECONDS * 1000, skipOnError: false } },
    schema: {
      tags: ['auth'],
      summary: 'Create a user',
      description: 'Unknown fields are ignored. The password is stored only as an argon2id hash. A link to verify the email ' +
        'address is sent to it (`POST /auth/email/verify`).',
      operationId: 'registerUser',
      security: [],
      body: RegisterBodySchema,
      response: { 201: Type.Ref(UserSchema, { description: 'Created' }), ...problemResponses(400, 409, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const { username, email, password } = request.body
    const problem = await app.passwordPolicy.problem(password, { username, email })
    if (problem !== undefined) throw Problems.validation([{ field: 'password', message: problem }])
    const user = await app.users.register({ username, email, password })
    if (user === undefined) throw Problems.userExists()
    audit(request, 'user_registered', { user_id: user.id })
    // After the answer: registration takes as long whether or not mail is on, and a slow outbox cannot fail it.
    app.inBackground('verification email', async () => await app.accounts.sendVerification(user))
    return reply.code(201).send(toUser(user))
  })
}

export default registerRoutes
