import type { FastifyPluginAsync } from 'fastify'
import registerRoutes from './register.js'
import tokenRoutes from './token.js'
import logoutRoutes from './logout.js'
import accountRoutes from './account.js'

const authRoutes: FastifyPluginAsync = async (app) => {
  await app.register(registerRoutes)
  await app.register(tokenRoutes)
  await app.register(logoutRoutes)
  await app.register(accountRoutes)
}

export default authRoutes
