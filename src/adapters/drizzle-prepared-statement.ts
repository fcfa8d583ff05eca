// Adapter over a private API of drizzle-orm: its session's prepareQuery(), which the query builder's .prepare()
// uses. test/adapters/drizzle-prepared-statement.test.ts fails when an update changes it.
import type { SQL } from 'drizzle-orm'
import { pgCore } from '../db/orm.js'
import type { Database } from '../db/client.js'

const dialect = new pgCore.PgDialect()

interface PrivateSession {
  prepareQuery?: (query: unknown, fields: undefined, name: string, isResponseInArrayMode: boolean) => { execute: (values: Record<string, unknown>) => Promise<unknown> }
}

/**
 * A hand-written statement (with sql.placeholder() values) prepared once: PostgreSQL parses and plans it once per
 * connection instead of on every call. For the hot paths the query builder cannot express (data-modifying CTEs);
 * the builder's own statements use .prepare(name).
 */
export function preparedStatement<Row> (db: Database, name: string, statement: SQL): (values: Record<string, unknown>) => Promise<Row[]> {
  const session = (db as unknown as { _: { session: PrivateSession } })._.session
  if (typeof session.prepareQuery !== 'function') {
    throw new Error('drizzle-orm no longer has session.prepareQuery(): update src/adapters/drizzle-prepared-statement.ts')
  }
  const prepared = session.prepareQuery(dialect.sqlToQuery(statement), undefined, name, false)
  return async (values) => {
    const result: unknown = await prepared.execute(values)
    // postgres.js answers with the rows, PGlite with { rows }.
    return (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Row[]
  }
}
