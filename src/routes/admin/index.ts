import type { FastifyPluginAsync } from 'fastify'
import adminUserRoutes from './users.js'

const adminRoutes: FastifyPluginAsync = async (app) => {
  await app.register(adminUserRoutes)
}

export default adminRoutes
