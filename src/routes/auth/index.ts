import type { FastifyPluginAsync } from 'fastify'
import registerRoutes from './register.js'
import tokenRoutes from './token.js'

const authRoutes: FastifyPluginAsync = async (app) => {
  await app.register(registerRoutes)
  await app.register(tokenRoutes)
}

export default authRoutes
