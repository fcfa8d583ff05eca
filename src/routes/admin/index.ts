import type { FastifyPluginAsync } from 'fastify'
import adminUserRoutes from './users.js'
import adminRoleRoutes from './roles.js'
import adminClientRoutes from './clients.js'

const adminRoutes: FastifyPluginAsync = async (app) => {
  await app.register(adminUserRoutes)
  await app.register(adminRoleRoutes)
  await app.register(adminClientRoutes)
}

export default adminRoutes
