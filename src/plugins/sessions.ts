import fp from 'fastify-plugin'
import { isDatabaseUnavailable } from '../db/availability.js'
import { createEndedFeed, type EndedFeed } from '../services/ended-feed.js'
import { EndedSessions } from '../services/ended-sessions.js'
import { SessionSync } from '../services/session-sync.js'
import { createSessionService, type SessionService } from '../services/sessions.js'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionService
    endedSessions: EndedSessions
    /** What the ended-session feed reads: ends within the same window as the set. */
    endedFeed: EndedFeed
  }
}

export default fp(async (app) => {
  const { database, config } = app
  // Long enough that every access token issued for an ended session has expired, plus clock skew.
  const windowMs = (config.ACCESS_TOKEN_TTL + 60) * 1000
  const ended = new EndedSessions(windowMs, config.SESSION_SYNC_MAX_STALENESS_SECONDS * 1000)
  const sync = new SessionSync({
    db: database.db,
    listen: database.listen,
    ended,
    windowMs,
    intervalMs: config.SESSION_SYNC_INTERVAL_MS,
    // An outage is logged once by the database plugin, not on every re-read that fails during it.
    onError: (error) => { if (!isDatabaseUnavailable(error)) app.log.warn({ err: error }, 'could not re-read ended sessions') }
  })
  const service = createSessionService(database.db, {
    absoluteTtlSeconds: config.SESSION_ABSOLUTE_TTL,
    idleTtlSeconds: config.SESSION_IDLE_TTL,
    reuseGraceSeconds: config.REFRESH_REUSE_GRACE_SECONDS
  }, async (rows) => { await sync.announce(rows) })

  // Read before the routes compile, not while they do: compiling blocks the event loop for long enough, on a loaded
  // box, that the read's DATABASE_TIMEOUT_MS ran out with its answer waiting (the start then failed).
  await sync.start()
  // preClose: before the database plugin's onClose ends the connections.
  app.addHook('preClose', async () => { await sync.stop() })

  app.decorate('sessions', service)
  app.decorate('endedSessions', ended)
  app.decorate('endedFeed', createEndedFeed(database.db, windowMs))
}, { name: 'sessions', dependencies: ['config', 'database'] })
