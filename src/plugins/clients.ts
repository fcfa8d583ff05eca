import fp from 'fastify-plugin'
import { createClientService, type ClientService } from '../services/clients.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Service clients (client credentials): registration, secrets, and authenticating them. */
    clients: ClientService
  }
}

export default fp(async (app) => {
  app.decorate('clients', createClientService(app.database.db))
}, { name: 'clients', dependencies: ['config', 'database'] })
