import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sql } from 'drizzle-orm'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import * as schema from './schema.js'

export type Database = PgDatabase<PgQueryResultHKT, typeof schema>

export interface DatabaseHandle {
  db: Database
  kind: 'postgres' | 'pglite'
  poolMax: number
  /** This instance's connections as the server sees them (active: running a query), the asking one left out. */
  poolStats: () => Promise<{ active: number, idle: number }>
  ping: () => Promise<void>
  migrate: () => Promise<void>
  /** LISTEN on a channel; resolves to a function that stops listening. */
  listen: (channel: string, onMessage: (payload: string) => void) => Promise<() => Promise<void>>
  close: () => Promise<void>
}

export interface DatabaseOptions {
  /** A postgres:// URL; without one the embedded PGlite is used. */
  url?: string
  /** Where PGlite keeps its files; undefined keeps them in memory (tests). */
  dataDir?: string
  poolMax?: number
  /** Named prepared statements on PostgreSQL (default true); false behind a pooler that cannot keep them. */
  preparedStatements?: boolean
}

// src/db and dist/db are both two levels below the package root.
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url))

// Serializes migrations when several instances start together against one server.
export const MIGRATION_LOCK_KEY = 7_241_001

export async function openDatabase (options: DatabaseOptions): Promise<DatabaseHandle> {
  return options.url !== undefined ? await openPostgres(options.url, options.poolMax ?? 10, options.preparedStatements ?? true) : await openPglite(options.dataDir)
}

async function openPostgres (url: string, poolMax: number, prepare: boolean): Promise<DatabaseHandle> {
  const { default: postgres } = await import('postgres')
  const { drizzle } = await import('drizzle-orm/postgres-js')
  // A name of this instance's own, so that pg_stat_activity tells its connections from other instances'.
  const applicationName = `auth-service-${randomBytes(4).toString('hex')}`
  // prepare: false turns off every prepared statement, the ones the services ask for included (postgres.js's own switch).
  const client = postgres(url, { max: poolMax, prepare, onnotice: () => {}, connect_timeout: 10, connection: { application_name: applicationName } })
  const db = drizzle({ client, schema }) as unknown as Database
  return {
    db,
    kind: 'postgres',
    poolMax,
    poolStats: async () => {
      const rows = await client<Array<{ state: string | null, count: number }>>`
        select state, count(*)::int as count from pg_stat_activity
        where application_name = ${applicationName} and pid <> pg_backend_pid() group by state`
      const count = (state: string): number => rows.find(r => r.state === state)?.count ?? 0
      return { active: count('active'), idle: count('idle') + count('idle in transaction') }
    },
    ping: async () => { await client`select 1` },
    migrate: async () => { await migratePostgres(url) },
    listen: async (channel, onMessage) => {
      // postgres.js keeps a dedicated connection for LISTEN and re-subscribes after it reconnects.
      const { unlisten } = await client.listen(channel, onMessage)
      return unlisten
    },
    close: async () => { await client.end({ timeout: 5 }) }
  }
}

/** Applies the committed migrations over one dedicated connection, holding an advisory lock. */
export async function migratePostgres (url: string): Promise<void> {
  const { default: postgres } = await import('postgres')
  const { drizzle } = await import('drizzle-orm/postgres-js')
  const { migrate } = await import('drizzle-orm/postgres-js/migrator')
  const client = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10, connection: { application_name: 'auth-service-migrate' } })
  try {
    await client`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`
    await migrate(drizzle({ client }), { migrationsFolder: MIGRATIONS_FOLDER })
    await client`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`
  } finally {
    await client.end({ timeout: 5 })
  }
}

async function openPglite (dataDir: string | undefined): Promise<DatabaseHandle> {
  const { PGlite } = await import('@electric-sql/pglite')
  const { drizzle } = await import('drizzle-orm/pglite')
  const { migrate } = await import('drizzle-orm/pglite/migrator')
  let client
  if (dataDir === undefined) {
    client = await PGlite.create()
  } else {
    const dir = join(dataDir, 'pglite')
    await mkdir(dir, { recursive: true })
    client = await PGlite.create(dir)
  }
  const db = drizzle({ client, schema })
  return {
    db: db as unknown as Database,
    kind: 'pglite',
    // One in-process connection, used one query at a time.
    poolMax: 1,
    poolStats: async () => ({ active: 0, idle: 1 }),
    ping: async () => { await db.execute(sql`select 1`) },
    migrate: async () => { await migrate(db, { migrationsFolder: MIGRATIONS_FOLDER }) },
    listen: async (channel, onMessage) => await client.listen(channel, onMessage),
    close: async () => { await client.close() }
  }
}
