import type { AnyColumn, SQL } from 'drizzle-orm'
import { gte, sql } from '../db/orm.js'
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
  private stopped = false
  private timer: NodeJS.Timeout | undefined
  private unlisten: (() => Promise<void>) | undefined
  // Ends announced in this turn of the event loop, and the NOTIFY their callers wait for.
  private unannounced: { ids: string[], notified: Promise<void> } | undefined
  // The NOTIFY on its way, if any: at most one at a time.
  private notifying: Promise<void> = Promise.resolve()

  constructor (private readonly options: SessionSyncOptions) {
    this.since = new Date(Date.now() - options.windowMs)
  }

  async start (): Promise<void> {
    await this.reread()
    let first = true
    const unlisten = await this.options.listen(SESSION_ENDED_CHANNEL, (payload) => {
      for (const id of payload.split(',')) if (UUID.test(id)) this.options.ended.add(id)
    }, () => {
      // LISTEN established again (a new connection after an outage): what was announced meanwhile was missed.
      if (first) first = false
      else this.reread().catch(this.options.onError)
    })
    // Stopped while starting (the app closed before it was ready): nothing is left listening or ticking.
    if (this.stopped) {
      await unlisten().catch(() => {})
      return
    }
    this.unlisten = unlisten
    this.timer = setInterval(() => { this.reread().catch(this.options.onError) }, this.options.intervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    this.timer = undefined
    await this.unlisten?.().catch(() => {})
    this.unlisten = undefined
  }

  /** Sessions this instance ended: refused here at once, and announced to the others. */
  async announce (rows: Array<{ id: string, endedAt: Date }>): Promise<void> {
    for (const row of rows) this.options.ended.add(row.id, row.endedAt)
    if (rows.length === 0) return
    // Ends announced while a NOTIFY is on its way, or in one turn of the event loop, go out together in the next
    // statement (a NOTIFY per 200 ids): one per logout cost a storm of logouts a round trip each, and every listening
    // instance a wake-up each. Each caller waits for the statement that carries its ids.
    if (this.unannounced === undefined) {
      const ids: string[] = []
      const previous = this.notifying.catch(() => {})
      const notified = (async () => {
        await Promise.all([previous, new Promise<void>((resolve) => { setImmediate(resolve) })])
        this.unannounced = undefined
        await this.notify(ids)
      })()
      this.unannounced = { ids, notified }
      this.notifying = notified
    }
    for (const row of rows) this.unannounced.ids.push(row.id)
    await this.unannounced.notified
  }

  private async notify (ids: string[]): Promise<void> {
    const notifications: SQL[] = []
    for (let i = 0; i < ids.length; i += IDS_PER_NOTIFICATION) {
      notifications.push(sql`pg_notify(${SESSION_ENDED_CHANNEL}, ${ids.slice(i, i + IDS_PER_NOTIFICATION).join(',')})`)
    }
    await this.options.db.execute(sql`select ${sql.join(notifications, sql`, `)}`)
  }

  async reread (): Promise<void> {
    if (this.rereading) return
    this.rereading = true
    try {
      const from = new Date(this.since.getTime() - REREAD_OVERLAP_MS)
      // Packed by the database (24 bytes per end): 100,000 ended sessions load without 100,000 row objects and dates.
      const [ended, deleted] = await Promise.all([
        this.options.db.select({ packed: packedEnds(sessions.id, sessions.endedAt) }).from(sessions).where(gte(sessions.endedAt, from)),
        // A deleted service client's id is the sid of its tokens: ended like a session.
        this.options.db.select({ packed: packedEnds(serviceClients.id, serviceClients.deletedAt) }).from(serviceClients).where(gte(serviceClients.deletedAt, from))
      ])
      for (const [row] of [ended, deleted]) {
        const newest = this.options.ended.addPacked(toBytes(row?.packed))
        if (newest > this.since.getTime()) this.since = new Date(newest)
      }
      this.options.ended.confirm()
      this.options.ended.prune()
    } finally {
      this.rereading = false
    }
  }
}

/** Each row's id (16 bytes) and end (8 bytes, big-endian epoch ms), concatenated: what EndedSessions.addPacked reads. */
function packedEnds (id: AnyColumn, endedAt: AnyColumn): SQL<Uint8Array | string | null> {
  return sql<Uint8Array | string | null>`string_agg(uuid_send(${id}) || int8send(floor(extract(epoch from ${endedAt}) * 1000)::int8), ''::bytea)`
}

/** bytea as the drivers give it: a Buffer (postgres.js), a Uint8Array (PGlite), or its hex text form. */
function toBytes (value: Uint8Array | string | null | undefined): Uint8Array {
  if (value === null || value === undefined) return new Uint8Array(0)
  if (typeof value !== 'string') return value
  return Buffer.from(value.startsWith('\\x') ? value.slice(2) : value, 'hex')
}
