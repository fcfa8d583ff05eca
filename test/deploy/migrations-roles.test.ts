import { cp, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'tap'
import { sql } from 'drizzle-orm'
import { MIGRATIONS_FOLDER, openDatabase, type DatabaseHandle } from '../../src/db/client.js'
import { rowsOf, tempDir, testDatabaseUrl } from '../helper.js'

/** Applies the migrations in `folder` with drizzle's migrator for the handle's driver. */
async function migrateFrom (handle: DatabaseHandle, folder: string): Promise<void> {
  if (handle.kind === 'postgres') {
    const { migrate } = await import('drizzle-orm/postgres-js/migrator')
    await migrate(handle.db as never, { migrationsFolder: folder })
  } else {
    const { migrate } = await import('drizzle-orm/pglite/migrator')
    await migrate(handle.db as never, { migrationsFolder: folder })
  }
}

test('migrations: when a database made before roles is migrated, then its existing users get the user role and the built-in roles exist', async (t) => {
  const url = await testDatabaseUrl(t)
  const dir = await tempDir(t)
  const handle = await openDatabase(url !== undefined ? { url, poolMax: 1 } : { dataDir: dir })
  t.teardown(handle.close)

  // The migrations as they stood before roles: the first two entries of the journal.
  const before = join(dir, 'migrations-before-roles')
  await cp(MIGRATIONS_FOLDER, before, { recursive: true })
  const journalFile = join(before, 'meta', '_journal.json')
  const journal = JSON.parse(await readFile(journalFile, 'utf8')) as { entries: Array<{ tag: string }> }
  t.same(journal.entries.slice(0, 2).map(e => e.tag), ['0000_init', '0001_sessions'])
  await writeFile(journalFile, JSON.stringify({ ...journal, entries: journal.entries.slice(0, 2) }))
  await migrateFrom(handle, before)
  await handle.db.execute(sql`insert into users (username, email, password_hash) values ('old_timer', 'old@example.com', 'x')`)

  await migrateFrom(handle, MIGRATIONS_FOLDER)
  const roles = rowsOf<{ role_name: string }>(await handle.db.execute(sql`
    select r.role_name from user_roles r join users u on u.id = r.user_id where u.username = 'old_timer'`))
  t.same(roles.map(r => r.role_name), ['user'])
  const builtIn = rowsOf<{ name: string, scopes: string[] }>(await handle.db.execute(sql`select name, scopes from roles where built_in order by name`))
  t.same(builtIn, [{ name: 'admin', scopes: ['clients:read', 'clients:write', 'roles:write', 'users:read', 'users:write'] }, { name: 'user', scopes: [] }])
})
