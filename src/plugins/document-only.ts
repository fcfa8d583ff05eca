import fp from 'fastify-plugin'
import { EndedSessions } from '../services/ended-sessions.js'

/**
 * Stand-ins for the document-only app (`npm run openapi`), which has no database: what the auth plugin reads, empty.
 * Such an app is never meant to serve requests.
 */
export default fp(async (app) => {
  app.decorate('endedSessions', new EndedSessions(0))
}, { name: 'document-only' })
