import { and, gte, isNotNull, sql } from '../db/orm.js'
import type { Database, DatabaseHandle } from '../db/client.js'
import { serviceClients, sessions } from '../db/schema.js'
import type { EndedSessions } from './ended-sessions.js'

export const SESSION_ENDED_CHANNEL = 'auth_session_ended'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
// Re-read a little before the newest end already seen: a transaction's now() can commit later than it reads.
const REREAD_OVERLAP_MS = 5000
// A NOTIFY payload holds at most 8000 bytes: 200 comma-separated ids (37 bytes each) fit with room to spare.
const IDS_PER_NOTIFICATION = 200

export interface SessionSyncOptions {
  db: Database
  listen: DatabaseHandle['listen']
  ended: EndedSessions
  /** How far back ended sessions matter: the access token lifetime plus skew. */
  windowMs: number
  /** How often the bounded re-read runs, in case a notification was missed. */
  intervalMs: number
  onError: (error: unknown) => void
}

/**
 * Keeps this instance's set of ended sessions current with every instance's: ends announced by NOTIFY (one per
 * batch of ended sessions), and a re-read of the recently ended ones every interval, which covers a missed
 * notification (a dropped LISTEN connection).
 */
export class SessionSync {
  private since: Date
  private rereading = false
  private timer: NodeJS.Timeout | undefined
  private unlisten: (() => Promise<void>) | undefined

  constructor (private readonly options: SessionSyncOptions) {
    this.since = new Date(Date.now() - options.windowMs)
  }

  async start (): Promise<void> {
    await this.reread()
    let first = true
    this.unlisten = await this.options.listen(SESSION_ENDED_CHANNEL, (payload) => {
      for (const id of payload.split(',')) if (UUID.test(id)) this.options.ended.add(id)
    }, () => {
      // LISTEN established again (a new connection after an outage): what was announced meanwhile was missed.
      if (first) first = false
      else this.reread().catch(this.options.onError)
    })
    this.timer = setInterval(() => { this.reread().catch(this.options.onError) }, this.options.intervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.unlisten?.().catch(() => {})
    this.unlisten = undefined
  }

  /** Sessions this instance ended: refused here at once, and announced to the others. */
  async announce (rows: Array<{ id: string, endedAt: Date }>): Promise<void> {
    for (const row of rows) this.options.ended.add(row.id, row.endedAt)
    for (let i = 0; i < rows.length; i += IDS_PER_NOTIFICATION) {
      const ids = rows.slice(i, i + IDS_PER_NOTIFICATION).map(r => r.id).join(',')
      await this.options.db.execute(sql`select pg_notify(${SESSION_ENDED_CHANNEL}, ${ids})`)
    }
  }

  async reread (): Promise<void> {
    if (this.rereading) return
    this.rereading = true
    try {
      const from = new Date(this.since.getTime() - REREAD_OVERLAP_MS)
      const rows = await this.options.db.select({ id: sessions.id, endedAt: sessions.endedAt }).from(sessions)
        .where(and(isNotNull(sessions.endedAt), gte(sessions.endedAt, from)))
      // A deleted service client's id is the sid of its tokens: ended like a session.
      const clients = await this.options.db.select({ id: serviceClients.id, endedAt: serviceClients.deletedAt }).from(serviceClients)
        .where(and(isNotNull(serviceClients.deletedAt), gte(serviceClients.deletedAt, from)))
      for (const row of [...rows, ...clients]) {
        if (row.endedAt === null) continue
        this.options.ended.add(row.id, row.endedAt)
        if (row.endedAt > this.since) this.since = row.endedAt
      }
      this.options.ended.confirm()
      this.options.ended.prune()
    } finally {
      this.rereading = false
    }
  }
}
