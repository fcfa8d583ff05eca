import { test } from 'tap'
import { sql } from 'drizzle-orm'
import { preparedStatement } from '../../src/adapters/drizzle-prepared-statement.js'
import { openDatabase } from '../../src/db/client.js'
import { bearer, build, embeddedDatabase, login, register, rowsOf, testDatabaseUrl } from '../helper.js'

// What PostgreSQL holds prepared on the connection that asks (DATABASE_POOL_MAX=1: the one the services use).
async function preparedOnConnection (app: Awaited<ReturnType<typeof build>>): Promise<string[]> {
  return rowsOf<{ statement: string }>(await app.database.db.execute(sql`select statement from pg_prepared_statements`)).map(r => r.statement)
}

for (const prepared of [true, false]) {
  test(`database: when DATABASE_PREPARED_STATEMENTS=${String(prepared)}, then register and login work and the login lookup is ${prepared ? '' : 'not '}prepared on PostgreSQL`, async (t) => {
    const app = await build(t, { DATABASE_PREPARED_STATEMENTS: prepared, DATABASE_POOL_MAX: 1 })
    const user = await register(app)
    const token = await login(app, user.username, user.password)
    t.equal((await app.inject({ method: 'GET', url: '/users/me', headers: bearer(token) })).statusCode, 200)
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

test('drizzle adapter: when a hand-written statement is prepared, then it runs with its placeholders and, on PostgreSQL, is held prepared', async (t) => {
  const url = await testDatabaseUrl(t)
  const handle = url === undefined ? await embeddedDatabase() : await openDatabase({ url, poolMax: 1 })
  if (url !== undefined) t.teardown(handle.close)
  const name = `adapter_probe_${process.pid}`
  const probe = preparedStatement<{ doubled: number, label: string }>(handle.db, name,
    sql`select ${sql.placeholder('n')}::int * 2 as doubled, ${sql.placeholder('label')}::text as label`)
  t.same(await probe({ n: 21, label: 'first' }), [{ doubled: 42, label: 'first' }])
  t.same(await probe({ n: 2, label: 'second' }), [{ doubled: 4, label: 'second' }], 'run again with other values')
  if (handle.kind === 'postgres') {
    // postgres.js names the statements itself; the text is what identifies it.
    const statements = rowsOf<{ statement: string }>(await handle.db.execute(sql`select statement from pg_prepared_statements`)).map(r => r.statement)
    t.ok(statements.some(s => s.includes('* 2 as doubled')), statements.join(' | '))
  }
})

test('drizzle adapter: when drizzle\'s session lacks prepareQuery, then building a statement fails loudly at once', async (t) => {
  const fake = { _: { session: {} } } as unknown as Parameters<typeof preparedStatement>[0]
  t.throws(() => preparedStatement(fake, 'x', sql`select 1`), /drizzle-orm no longer has session.prepareQuery\(\)/)
})
