import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Problems } from '../../errors.js'
import { requireAuthentication } from '../../plugins/auth.js'
import { problemResponses } from '../../schemas/problem.js'
import { AcceptedSchema, RegisterBodySchema, passwordField } from '../../schemas/user.js'
import { audit } from '../../services/audit.js'

const EmailTokenSchema = Type.String({ minLength: 1, maxLength: 256, description: 'The `token` parameter of the link in the message' })

// The same words whether or not the address belongs to someone: nothing to learn from the answer.
const RESET_ACCEPTED = { detail: 'If an account has this email address, a message with a link to reset its password is on its way' }

/** Password reset by email and email verification (the links in the messages lead here through the front end). */
const accountRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const limit = { max: app.config.RATE_LIMIT_EMAIL_MAX, timeWindow: app.config.RATE_LIMIT_WINDOW_SECONDS * 1000, skipOnError: false }

  app.post('/password/forgot', {
    config: { rateLimit: limit },
    schema: {
      tags: ['account'],
      summary: 'Ask for a password reset link by email',
      description: 'Always 202 with the same body, at once, whether or not an account has the address; only a known ' +
        'address gets a message (at most one a minute). The link holds a single-use token valid for PASSWORD_RESET_TTL seconds.',
      operationId: 'forgotPassword',
      security: [],
      body: Type.Object({ email: RegisterBodySchema.properties.email }, { title: 'ForgotPasswordRequest' }),
      response: { 202: Type.Ref(AcceptedSchema, { description: 'Accepted' }), ...problemResponses(400, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    if (!app.mail.enabled) throw Problems.emailUnavailable()
    const { email } = request.body
    // The work happens after the answer, so that the answer takes as long for a known address as for an unknown one.
    app.inBackground('password reset request', async () => {
      const outcome = await app.accounts.requestPasswordReset(email)
      if (outcome.sent) audit(request, 'password_reset_requested', { user_id: outcome.userId })
    })
    return await reply.code(202).send(RESET_ACCEPTED)
  })

  app.post('/password/reset', {
    config: { rateLimit: limit },
    schema: {
      tags: ['account'],
      summary: 'Set a new password with the token from a reset link',
      description: 'Ends every session of the user. A bad, used or expired token is 400 `invalid_token`, the same for each. ' +
        'The link also proves the email address it was sent to.',
      operationId: 'resetPassword',
      security: [],
      body: Type.Object({ token: EmailTokenSchema, password: passwordField() }, { title: 'ResetPasswordRequest' }),
      response: { 204: Type.Null({ description: 'The password is set' }), ...problemResponses(400, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const outcome = await app.accounts.resetPassword(request.body.token, request.body.password)
    if (!outcome.ok) {
      throw outcome.reason === 'invalid_token' ? Problems.invalidEmailToken() : Problems.validation([{ field: 'password', message: outcome.message }])
    }
    audit(request, 'password_reset', { user_id: outcome.userId, sessions_ended: outcome.ended })
    return await reply.code(204).send(null)
  })

  app.post('/email/verify', {
    config: { rateLimit: limit },
    schema: {
      tags: ['account'],
      summary: 'Verify the email address with the token from a verification link',
      description: 'A bad, used or expired token, or one sent to an address the user has since changed, is 400 `invalid_token`.',
      operationId: 'verifyEmail',
      security: [],
      body: Type.Object({ token: EmailTokenSchema }, { title: 'VerifyEmailRequest' }),
      response: { 204: Type.Null({ description: 'Verified' }), ...problemResponses(400, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const userId = await app.accounts.verifyEmail(request.body.token)
    if (userId === undefined) throw Problems.invalidEmailToken()
    audit(request, 'email_verified', { user_id: userId })
    return await reply.code(204).send(null)
  })

  await app.register(async (signedIn) => {
    requireAuthentication(signedIn)
    signedIn.post('/email/verify/resend', {
      config: { rateLimit: limit },
      schema: {
        tags: ['account'],
        summary: 'Send the verification link again',
        description: 'Sends a new link (the older ones die) unless the address is verified already or a link went less than ' +
          'a minute ago; 202 either way.',
        operationId: 'resendVerification',
        response: { 202: Type.Ref(AcceptedSchema, { description: 'Accepted' }), ...problemResponses(400, 401, 413, 415, 429, 500, 503) }
      }
    }, async (request, reply) => {
      if (!app.mail.enabled) throw Problems.emailUnavailable()
      const user = await app.users.findById(request.user.sub)
      if (user === undefined) throw Problems.invalidToken()
      const sent = await app.accounts.sendVerification(user, { throttle: true })
      if (sent) audit(request, 'email_verification_sent', { user_id: user.id })
      return await reply.code(202).send({ detail: user.emailVerified ? 'The email address is verified already' : 'A message with a link is on its way' })
    })
  })
}

export default accountRoutes
