import { gte } from '../db/orm.js'
import type { Database } from '../db/client.js'
import { serviceClients, sessions } from '../db/schema.js'
import type { EndedSessions } from './ended-sessions.js'

export interface EndedEntry {
  id: string
  endedAt: Date
}

/** Ends, oldest first, and the cursor to resume after them: the newest end's time, epoch milliseconds. */
export interface EndedSince {
  ended: EndedEntry[]
  cursor: number
}

/** Ends learned together (one NOTIFY, one logout, one re-read), as the feed sends them. */
export interface EndedBatch {
  ids: string[]
  endedAt: Date
}

// Read a little before the cursor, as the session sync does: a transaction's now() can commit later than it reads.
export const CURSOR_OVERLAP_MS = 5000
const CURSOR = /^\d{1,15}$/

/** A cursor as clients send it back (`since`, Last-Event-ID): decimal epoch milliseconds, else undefined. */
export function parseCursor (value: unknown): number | undefined {
  return typeof value === 'string' && CURSOR.test(value) ? Number(value) : undefined
}

export interface EndedFeed {
  /**
   * Sessions ended and service clients deleted since `cursor` (less the overlap), within the last `windowMs`: older
   * ends cannot matter, every token of theirs has expired. Without a cursor, the whole window.
   */
  since: (cursor?: number) => Promise<EndedSince>
}

export function createEndedFeed (db: Database, windowMs: number): EndedFeed {
  return {
    async since (cursor) {
      const windowStart = Date.now() - windowMs
      const from = new Date(cursor === undefined ? windowStart : Math.max(windowStart, cursor - CURSOR_OVERLAP_MS))
      const [ended, deleted] = await Promise.all([
        db.select({ id: sessions.id, endedAt: sessions.endedAt }).from(sessions).where(gte(sessions.endedAt, from)),
        // A deleted client's tokens carry its id as their sid: it ends like a session.
        db.select({ id: serviceClients.id, endedAt: serviceClients.deletedAt }).from(serviceClients).where(gte(serviceClients.deletedAt, from))
      ])
      const rows = [...ended, ...deleted].filter((r): r is EndedEntry => r.endedAt !== null).sort((a, b) => a.endedAt.getTime() - b.endedAt.getTime())
      // Not the clock of this instance: the cursor only ever moves to an end's own time, so no end can fall behind it.
      const newest = rows.at(-1)?.endedAt.getTime() ?? Number.NEGATIVE_INFINITY
      return { ended: rows, cursor: Math.max(cursor ?? windowStart, newest) }
    }
  }
}

/** Groups `chunk`-sized runs of ends, oldest first, each with the time of its newest end. */
export function toBatches (ended: EndedEntry[], chunk: number): EndedBatch[] {
  const batches: EndedBatch[] = []
  for (let i = 0; i < ended.length; i += chunk) {
    const part = ended.slice(i, i + chunk)
    batches.push({ ids: part.map(e => e.id), endedAt: part[part.length - 1].endedAt })
  }
  return batches
}

/**
 * Calls `deliver` with the sessions newly listed as ended, those learned in one turn of the event loop together (a
 * NOTIFY of 200 ids is one batch); answers the function that stops it.
 */
export function batchNewEnds (ended: EndedSessions, deliver: (batch: EndedBatch) => void): () => void {
  let ids: string[] = []
  let newest = 0
  let scheduled = false
  const flush = (): void => {
    scheduled = false
    const batch = { ids, endedAt: new Date(newest) }
    ids = []
    newest = 0
    deliver(batch)
  }
  return ended.onEnded((id, endedAt) => {
    ids.push(id)
    newest = Math.max(newest, endedAt.getTime())
    if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  })
}
