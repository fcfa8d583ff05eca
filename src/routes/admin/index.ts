import type { FastifyPluginAsync } from 'fastify'
import adminUserRoutes from './users.js'
import adminRoleRoutes from './roles.js'

const adminRoutes: FastifyPluginAsync = async (app) => {
  await app.register(adminUserRoutes)
  await app.register(adminRoleRoutes)
}

export default adminRoutes
