import { test } from 'tap'
import { sql } from 'drizzle-orm'
import { build, login, register } from '../helper.js'

// What PostgreSQL holds prepared on the connection that asks (DATABASE_POOL_MAX=1: the one the services use).
async function preparedOnConnection (app: Awaited<ReturnType<typeof build>>): Promise<string[]> {
  const result: unknown = await app.database.db.execute(sql`select statement from pg_prepared_statements`)
  const rows = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Array<{ statement: string }>
  return rows.map(r => r.statement)
}

for (const prepared of [true, false]) {
  test(`database: when DATABASE_PREPARED_STATEMENTS=${String(prepared)}, then register and login work and the login lookup is ${prepared ? '' : 'not '}prepared on PostgreSQL`, async (t) => {
    const app = await build(t, { DATABASE_PREPARED_STATEMENTS: prepared, DATABASE_POOL_MAX: 1 })
    const user = await register(app)
    const token = await login(app, user.username, user.password)
    t.equal((await app.inject({ method: 'GET', url: '/users/me', headers: { authorization: `Bearer ${token}` } })).statusCode, 200)
    if (app.database.kind === 'postgres') {
      const statements = await preparedOnConnection(app)
      const lookup = statements.filter(s => /lower\("users"\."username"\)/.test(s))
      t.equal(lookup.length, prepared ? 1 : 0, `prepared: ${statements.map(s => s.slice(0, 60)).join(' | ')}`)
      t.equal(statements.some(s => /insert into "sessions"/.test(s)), prepared, 'the session-opening statement likewise')
    } else {
      // The embedded PGlite has no pool and no pooler in front of it: the setting is for PostgreSQL servers.
      t.equal(app.database.kind, 'pglite')
    }
  })
}
