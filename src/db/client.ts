import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { drivers, sql } from './orm.js'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import type { Sql as PostgresSql, TransactionSql as PostgresTransactionSql } from 'postgres'
import { DatabaseAvailability, DatabaseUnavailable, isConnectionLost } from './availability.js'
import * as schema from './schema.js'

type Sql = PostgresSql<Record<string, never>>
type TransactionSql = PostgresTransactionSql<Record<string, never>>
/** What this module needs of a postgres.js query: lazy until awaited, and cancellable while it waits for a connection. */
type Query = Promise<unknown> & { values: () => Query, cancel: () => Promise<void> | undefined, state?: unknown }

export type Database = PgDatabase<PgQueryResultHKT, typeof schema>

export interface DatabaseHandle {
  db: Database
  kind: 'postgres' | 'pglite'
  poolMax: number
  /** This instance's connections as the server sees them (active: running a query), the asking one left out. */
  poolStats: () => Promise<{ active: number, idle: number }>
  ping: () => Promise<void>
  migrate: () => Promise<void>
  /** Whether the database answered lately (always true for PGlite); false while an outage is under way. */
  available: () => boolean
  /**
   * LISTEN on a channel; resolves to a function that stops listening. onListen runs each time LISTEN is established
   * again (a new connection after an outage): notifications sent meanwhile were missed.
   */
  listen: (channel: string, onMessage: (payload: string) => void, onListen?: () => void) => Promise<() => Promise<void>>
  close: () => Promise<void>
}

export interface DatabaseOptions {
  /** A postgres:// URL; without one the embedded PGlite is used. */
  url?: string
  /** Where PGlite keeps its files; undefined keeps them in memory (tests). */
  dataDir?: string
  /** An in-memory PGlite's starting contents: a data directory PGlite dumped (dumpDataDir). */
  snapshot?: Blob
  poolMax?: number
  /** Named prepared statements on PostgreSQL (default true); false behind a pooler that cannot keep them. */
  preparedStatements?: boolean
  /**
   * The server's longest wait per step on PostgreSQL: connecting, waiting for a pooled connection, each query. Unset
   * (the command-line tools) leaves queries unbounded. The service sets it (DATABASE_TIMEOUT_MS).
   */
  timeoutMs?: number
  /** An outage's start and end, once each (PostgreSQL with timeoutMs). */
  onDown?: (reason: string) => void
  onUp?: (downForMs: number) => void
}

type Bounds = Pick<DatabaseOptions, 'timeoutMs' | 'onDown' | 'onUp'>

interface Subscription {
  channel: string
  onMessage: (payload: string) => void
  onListen: () => void
  unlisten?: () => Promise<void>
}

// How much sooner than the client's bound the server's statement_timeout cancels a query.
const STATEMENT_TIMEOUT_HEADROOM_MS = 300
// How often overdue queries are looked for: a query is given up between timeoutMs and timeoutMs + SWEEP_MS.
const SWEEP_MS = 100

interface Waiting {
  since: number
  expire: () => void
}

function describe (error: unknown): string {
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' ? code : 'connection lost'
}

// src/db and dist/db are both two levels below the package root.
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url))

// Serializes migrations when several instances start together against one server.
export const MIGRATION_LOCK_KEY = 7_241_001

export async function openDatabase (options: DatabaseOptions): Promise<DatabaseHandle> {
  return options.url !== undefined
    ? await openPostgres(options.url, options.poolMax ?? 10, options.preparedStatements ?? true, { timeoutMs: options.timeoutMs, onDown: options.onDown, onUp: options.onUp })
    : await openPglite(options.dataDir, options.snapshot)
}

async function openPostgres (url: string, poolMax: number, prepare: boolean, bounds: Bounds): Promise<DatabaseHandle> {
  const { default: postgres } = await import('postgres')
  const { drizzle } = drivers.postgresJs()
  const { timeoutMs } = bounds
  // A name of this instance's own, so that pg_stat_activity tells its connections from other instances'.
  const applicationName = `auth-service-${randomBytes(4).toString('hex')}`
  const connectSeconds = timeoutMs === undefined ? 10 : timeoutMs / 1000
  const connection: Record<string, string | number> = { application_name: applicationName }
  // The server cancels a slow query a little before the client's timer runs out: that request alone gets its 503,
  // and the client's timer is left to mean what it says, a server that does not answer at all.
  if (timeoutMs !== undefined) connection.statement_timeout = Math.max(100, timeoutMs - STATEMENT_TIMEOUT_HEADROOM_MS)
  // prepare: false turns off every prepared statement, the ones the services ask for included (postgres.js's own switch).
  const openPool = (): Sql => postgres(url, { max: poolMax, prepare, onnotice: () => {}, connect_timeout: connectSeconds, connection })

  const first = openPool()
  let pool: Sql | undefined = first
  const subscriptions = new Set<Subscription>()

  const availability = new DatabaseAvailability({
    ...bounds,
    probe: async () => {
      // A connection of its own: the pool's may all be stuck on a server that stopped answering.
      const sql = postgres(url, { max: 1, prepare: false, fetch_types: false, onnotice: () => {}, connect_timeout: connectSeconds, connection: { application_name: `${applicationName}-probe` } })
      try {
        await bounded(sql`select 1` as Promise<unknown>, timeoutMs ?? 10_000)
      } finally {
        sql.end({ timeout: 0 }).catch(() => {})
      }
    },
    drop: () => {
      // Every connection is cut, LISTEN's included: what they were waiting for is refused now, not when the server
      // comes back (a frozen server would run it then, for a client long since told 503).
      const stuck = pool
      pool = undefined
      stuck?.end({ timeout: 0 }).catch(() => {})
    },
    restore: async () => {
      const fresh = openPool()
      // drizzle set its type parsers on the first pool's options; the new pool reads dates the same way.
      Object.assign(fresh.options.parsers, first.options.parsers)
      Object.assign(fresh.options.serializers, first.options.serializers)
      try {
        for (const subscription of subscriptions) await subscribe(fresh, subscription)
      } catch (error) {
        await fresh.end({ timeout: 0 }).catch(() => {})
        throw error
      }
      pool = fresh
    },
    restored: () => {
      // LISTEN is back: what was announced while it was not is re-read now that queries are let through again.
      for (const subscription of subscriptions) subscription.onListen()
    }
  })

  function current (): Sql {
    if (pool === undefined || !availability.up) throw new DatabaseUnavailable('it did not answer recently')
    return pool
  }

  // Every query and transaction waiting on the database, and when it began. One sweep every SWEEP_MS expires the overdue
  // ones: no timer and no extra promise per query (a timer and a Promise.race each cost 16% of a cached lookup's
  // throughput, measured with 10 concurrent loops of prepared selects).
  const waiting = new Set<Waiting>()
  const sweeper = timeoutMs === undefined
    ? undefined
    : setInterval(() => {
      const due = Date.now() - timeoutMs
      for (const entry of waiting) {
        if (entry.since > due) continue
        waiting.delete(entry)
        entry.expire()
      }
    }, SWEEP_MS).unref()

  /** One query under the client-side bound: a sent query left unanswered is proof of an outage, a queued one a sign. */
  async function run<T> (start: (sql: Sql) => Query): Promise<T> {
    const query = start(current())
    return await new Promise<T>((resolve, reject) => {
      const entry: Waiting = {
        since: Date.now(),
        expire: () => {
          // state is set once the query is on a connection; until then it only waits in the pool's queue.
          const sent = query.state != null
          // Still queued: taken out, so that it never runs later for a client already told 503.
          if (!sent) query.cancel()?.catch(() => {})
          reject(new DatabaseUnavailable(sent ? `no answer within ${timeoutMs} ms` : `no free connection within ${timeoutMs} ms`))
          if (sent) availability.down(`a query got no answer within ${timeoutMs} ms`)
          else availability.suspect(`a query waited over ${timeoutMs} ms for a connection`)
        }
      }
      if (sweeper !== undefined) waiting.add(entry)
      settle(query, entry, resolve, reject)
    })
  }

  /** Passes on a query's or transaction's outcome, no longer waiting; a lost connection is a sign worth a probe. */
  function settle<T> (work: Promise<unknown>, entry: Waiting, resolve: (value: T) => void, reject: (error: unknown) => void): void {
    work.then((value) => {
      waiting.delete(entry)
      resolve(value as T)
    }, (error: unknown) => {
      waiting.delete(entry)
      if (isConnectionLost(error)) availability.suspect(describe(error))
      reject(error)
    })
  }

  /** A promise bounded by its own timer (the probe's and LISTEN's, which are rare). */
  async function bounded<T> (promise: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new DatabaseUnavailable(`no answer within ${ms} ms`)) }, ms)
    })
    try {
      return await Promise.race([promise, expired])
    } finally {
      clearTimeout(timer)
    }
  }

  // What drizzle is given in place of a postgres.js client: the same calls, on whichever pool is current, each bounded.
  const client = {
    options: first.options,
    unsafe: (query: string, params?: unknown[], options?: { prepare?: boolean }) => deferred(sql => sql.unsafe(query, params as never, options) as unknown as Query),
    begin: async <T>(fn: (tx: unknown) => Promise<T>) => await transaction(fn)
  }

  /** postgres.js queries are lazy and drizzle calls .values() before awaiting: both are kept, the run is bounded. */
  function deferred<T> (make: (sql: Sql) => Query) {
    let values = false
    return {
      values () { values = true; return this },
      then<A, B> (resolve: (value: T) => A, reject: (error: unknown) => B) {
        return run<T>(sql => { const query = make(sql); return values ? query.values() : query }).then(resolve, reject)
      }
    }
  }

  /** A transaction: the wait for its connection is bounded, and so is each statement in it. */
  async function transaction<T> (fn: (tx: unknown) => Promise<T>): Promise<T> {
    const sql = current()
    let abandoned = false
    return await new Promise<T>((resolve, reject) => {
      const entry: Waiting = {
        since: Date.now(),
        expire: () => {
          abandoned = true
          reject(new DatabaseUnavailable(`no transaction within ${timeoutMs} ms`))
          availability.suspect(`a transaction waited over ${timeoutMs} ms to begin`)
        }
      }
      if (sweeper !== undefined) waiting.add(entry)
      settle(sql.begin(async (tx) => {
        waiting.delete(entry)
        // Begun after its caller was told 503: rolled back, never run.
        if (abandoned) throw new DatabaseUnavailable('transaction abandoned')
        return await fn(inTransaction(tx))
      }), entry, resolve, reject)
    })
  }

  function inTransaction (tx: TransactionSql): unknown {
    return {
      unsafe: (query: string, params?: unknown[], options?: { prepare?: boolean }) => deferred(() => tx.unsafe(query, params as never, options) as unknown as Query),
      savepoint: async <T>(fn: (inner: unknown) => Promise<T>) => await tx.savepoint(async (inner) => await fn(inTransaction(inner)))
    }
  }

  async function subscribe (sql: Sql, subscription: Subscription): Promise<void> {
    // postgres.js keeps a dedicated connection for LISTEN, listens again after it reconnects and then calls onListen.
    // onListen only once queries are let through (restored, above), or when postgres.js listens again on its own.
    const onListen = (): void => { if (availability.up) subscription.onListen() }
    const { unlisten } = await bounded(sql.listen(subscription.channel, subscription.onMessage, onListen), timeoutMs ?? 10_000)
    subscription.unlisten = unlisten
  }

  const db = drizzle({ client: client as unknown as Sql, schema }) as unknown as Database
  return {
    db,
    kind: 'postgres',
    poolMax,
    available: () => availability.up,
    poolStats: async () => {
      if (!availability.up) return { active: 0, idle: 0 }
      const rows = await run<Array<{ state: string | null, count: number }>>(sql => sql`
        select state, count(*)::int as count from pg_stat_activity
        where application_name = ${applicationName} and pid <> pg_backend_pid() group by state` as unknown as Query)
      const count = (state: string): number => rows.find(r => r.state === state)?.count ?? 0
      return { active: count('active'), idle: count('idle') + count('idle in transaction') }
    },
    ping: async () => { await run(sql => sql`select 1` as unknown as Query) },
    migrate: async () => { await migratePostgres(url) },
    listen: async (channel, onMessage, onListen) => {
      const subscription: Subscription = { channel, onMessage, onListen: onListen ?? (() => {}) }
      await subscribe(current(), subscription)
      subscriptions.add(subscription)
      return async () => {
        subscriptions.delete(subscription)
        await subscription.unlisten?.()
      }
    },
    close: async () => {
      availability.stop()
      clearInterval(sweeper)
      await pool?.end({ timeout: 5 })
    }
  }
}

/** Applies the committed migrations over one dedicated connection, holding an advisory lock. */
export async function migratePostgres (url: string): Promise<void> {
  const { default: postgres } = await import('postgres')
  const { drizzle } = drivers.postgresJs()
  const { migrate } = drivers.postgresJsMigrator()
  const client = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10, connection: { application_name: 'auth-service-migrate' } })
  try {
    await client`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`
    await migrate(drizzle({ client }), { migrationsFolder: MIGRATIONS_FOLDER })
    await client`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`
  } finally {
    await client.end({ timeout: 5 })
  }
}

async function openPglite (dataDir: string | undefined, snapshot: Blob | undefined): Promise<DatabaseHandle> {
  const { PGlite } = await import('@electric-sql/pglite')
  const { drizzle } = drivers.pglite()
  const { migrate } = drivers.pgliteMigrator()
  let client
  let release: (() => Promise<void>) | undefined
  if (dataDir === undefined) {
    // In memory: empty, or from a snapshot (the tests load one migrated database instead of initialising each).
    client = await PGlite.create(snapshot !== undefined ? { loadDataDir: snapshot } : {})
  } else {
    // PGlite's files take one process at a time (two corrupt them): lock DATA_DIR before opening anything in it.
    const { lockDataDir } = await import('./data-dir-lock.js')
    release = await lockDataDir(dataDir)
    try {
      const dir = join(dataDir, 'pglite')
      await mkdir(dir, { recursive: true })
      client = await PGlite.create(dir)
    } catch (error) {
      await release()
      throw error
    }
  }
  const db = drizzle({ client, schema })
  return {
    db: db as unknown as Database,
    kind: 'pglite',
    // One in-process connection, used one query at a time.
    poolMax: 1,
    available: () => true,
    poolStats: async () => ({ active: 0, idle: 1 }),
    ping: async () => { await db.execute(sql`select 1`) },
    migrate: async () => { await migrate(db, { migrationsFolder: MIGRATIONS_FOLDER }) },
    listen: async (channel, onMessage, onListen) => {
      const unlisten = await client.listen(channel, onMessage)
      onListen?.()
      return unlisten
    },
    close: async () => {
      try {
        await client.close()
      } finally {
        await release?.()
      }
    }
  }
}
