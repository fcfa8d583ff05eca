import fp from 'fastify-plugin'
import { and, gte, isNotNull, sql } from 'drizzle-orm'
import { sessions } from '../db/schema.js'
import { EndedSessions } from '../services/ended-sessions.js'
import { createSessionService, SESSION_ENDED_CHANNEL, type SessionService } from '../services/sessions.js'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionService
    endedSessions: EndedSessions
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
// Re-read a little before the newest end already seen: a transaction's now() can commit later than it reads.
const REREAD_OVERLAP_MS = 5000

export default fp(async (app) => {
  const { db } = app.database
  const config = app.config
  // Long enough that every access token issued for an ended session has expired, plus clock skew.
  const ended = new EndedSessions((config.ACCESS_TOKEN_TTL + 60) * 1000)

  const service = createSessionService(db, {
    absoluteTtlSeconds: config.SESSION_ABSOLUTE_TTL,
    idleTtlSeconds: config.SESSION_IDLE_TTL,
    reuseGraceSeconds: config.REFRESH_REUSE_GRACE_SECONDS
  }, async (rows) => {
    for (const row of rows) {
      ended.add(row.id, row.endedAt)
      await db.execute(sql`select pg_notify(${SESSION_ENDED_CHANNEL}, ${row.id})`)
    }
  })

  let since = new Date(Date.now() - (config.ACCESS_TOKEN_TTL + 60) * 1000)
  let polling = false
  async function reread (): Promise<void> {
    if (polling) return
    polling = true
    try {
      const rows = await db.select({ id: sessions.id, endedAt: sessions.endedAt }).from(sessions)
        .where(and(isNotNull(sessions.endedAt), gte(sessions.endedAt, new Date(since.getTime() - REREAD_OVERLAP_MS))))
      for (const row of rows) {
        if (row.endedAt === null) continue
        ended.add(row.id, row.endedAt)
        if (row.endedAt > since) since = row.endedAt
      }
      ended.prune()
    } finally {
      polling = false
    }
  }

  await reread()
  const unlisten = await app.database.listen(SESSION_ENDED_CHANNEL, (payload) => {
    if (UUID.test(payload)) ended.add(payload)
  })
  // The bounded re-read covers a missed notification (a dropped LISTEN connection) within one interval.
  const timer = setInterval(() => {
    reread().catch((error: unknown) => { app.log.warn({ err: error }, 'could not re-read ended sessions') })
  }, config.SESSION_SYNC_INTERVAL_MS)
  timer.unref()

  // preClose: before the database plugin's onClose ends the connections.
  app.addHook('preClose', async () => {
    clearInterval(timer)
    await unlisten().catch(() => {})
  })

  app.decorate('sessions', service)
  app.decorate('endedSessions', ended)
}, { name: 'sessions', dependencies: ['config', 'database'] })
