import { spawn, type ChildProcess } from 'node:child_process'
import { cp, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'tap'
import { getTableName, is, sql } from 'drizzle-orm'
import { PgTable } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import { MIGRATION_LOCK_KEY, openDatabase } from '../../src/db/client.js'
import * as schema from '../../src/db/schema.js'
import { eventually, listFiles, MIGRATE, REPO_ROOT, rowsOf, runToExit, sorted, SPAWN_CWD, tempDir, testDatabaseUrl } from '../helper.js'

const SCHEMA_FILE = join(REPO_ROOT, 'src', 'db', 'schema.ts')
const DRIZZLE_KIT = join(REPO_ROOT, 'node_modules', '.bin', 'drizzle-kit')

interface Generated {
  output: string
  before: string[]
  after: string[]
  dir: string
}

/** `drizzle-kit generate` for this schema file against a copy of migrations/, in a temporary folder. */
async function generate (t: Parameters<typeof tempDir>[0], schemaFile: string): Promise<Generated> {
  const dir = await tempDir(t)
  await cp(join(REPO_ROOT, 'migrations'), join(dir, 'migrations'), { recursive: true })
  // `out` relative to the working directory: drizzle-kit 0.31 prefixes an absolute `out` with "./".
  await writeFile(join(dir, 'drizzle.config.json'), JSON.stringify({ dialect: 'postgresql', schema: schemaFile, out: './migrations' }))
  const before = await listFiles(join(dir, 'migrations'))
  const child = spawn(DRIZZLE_KIT, ['generate', '--config', 'drizzle.config.json'], {
    cwd: dir,
    // A schema file outside the project still finds drizzle-orm.
    env: { ...process.env, NODE_PATH: join(REPO_ROOT, 'node_modules') },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const { code, output } = await runToExit(child)
  // drizzle-kit exits 0 even when it fails to load the schema: its words are what count.
  if (code !== 0 || /Error:/.test(output)) throw new Error(`drizzle-kit generate failed (${code}): ${output}`)
  return { output, before, after: await listFiles(join(dir, 'migrations')), dir }
}

test('migrations: when drizzle-kit compares the committed migrations with src/db/schema.ts, then it finds no change to make', async (t) => {
  const result = await generate(t, SCHEMA_FILE)
  t.match(result.output, /No schema changes, nothing to migrate/)
  t.same(result.after, result.before, 'no file written')
  t.ok(result.before.some(f => f.endsWith('.sql')), 'the copy holds the committed migrations')
})

test('migrations: when the schema gains a column the migrations lack, then drizzle-kit generates a migration for it', async (t) => {
  const original = await readFile(SCHEMA_FILE, 'utf8')
  const marker = "  scope: text('scope')\n"
  t.ok(original.includes(marker), 'the sessions table still ends with scope (update this test if not)')
  const copy = await tempDir(t)
  const file = join(copy, 'schema.ts')
  await writeFile(file, original.replace(marker, "  scope: text('scope'),\n  deployTestExtra: text('deploy_test_extra')\n"))
  // The schema takes drizzle from the module beside it.
  await cp(join(REPO_ROOT, 'src', 'db', 'orm.ts'), join(copy, 'orm.ts'))
  const result = await generate(t, file)
  t.match(result.output, /Your SQL migration file/)
  const added = result.after.filter(f => !result.before.includes(f) && f.endsWith('.sql'))
  t.equal(added.length, 1, `one new migration (${added.join(', ')})`)
  if (added.length === 1) {
    t.match(await readFile(join(result.dir, 'migrations', added[0]), 'utf8'), /ALTER TABLE "sessions" ADD COLUMN "deploy_test_extra" text/)
  }
})

function startMigrate (env: Record<string, string>): ChildProcess {
  // Its own process group, so that a hung run can be ended with npm's children.
  return spawn('npm', ['run', '--silent', 'db:migrate'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
}

test('npm run db:migrate: when run twice on a fresh database, then the schema\'s tables exist, the second run applies nothing, and on a server it waits for the migration lock on one connection', async (t) => {
  const dataDir = await tempDir(t)
  const databaseUrl = await testDatabaseUrl(t)
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', DATA_DIR: dataDir }
  // On a server, as a deploy runs it: production, and no signing key (the migration step needs none).
  if (databaseUrl !== undefined) Object.assign(env, { DATABASE_URL: databaseUrl, NODE_ENV: 'production' })
  const children: ChildProcess[] = []
  t.teardown(() => {
    for (const child of children) if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL')
  })

  if (databaseUrl !== undefined) {
    // Hold the lock the migrator takes: it must wait, on its single connection, until we let go.
    const holder = postgres(databaseUrl, { max: 1, onnotice: () => {} })
    t.teardown(async () => { await holder.end({ timeout: 5 }) })
    const database = new URL(databaseUrl).pathname.slice(1)
    const [{ pid }] = await holder<Array<{ pid: number }>>`select pg_backend_pid() as pid`
    await holder`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`
    const child = startMigrate(env)
    children.push(child)
    const finished = runToExit(child)
    let waiting: Array<{ count: number }> = []
    // Until the migrator waits on the lock, or has exited (which the assertion below reports).
    await eventually(async () => {
      waiting = await holder<Array<{ count: number }>>`
        select count(*)::int as count from pg_stat_activity
        where datname = ${database} and pid <> ${pid} and wait_event_type = 'Lock' and wait_event = 'advisory'`
      return waiting[0].count > 0 || child.exitCode !== null
    }, { timeoutMs: 60_000, intervalMs: 100, what: 'the migrator waiting for the advisory lock' })
    t.equal(waiting[0]?.count, 1, 'the migrator waits for the advisory lock')
    const connections = await holder<Array<{ count: number }>>`
      select count(*)::int as count from pg_stat_activity where datname = ${database} and pid <> ${pid}`
    t.equal(connections[0].count, 1, 'the migrator holds exactly one connection')
    const [{ exists }] = await holder<Array<{ exists: boolean }>>`select to_regclass('public.users') is not null as exists`
    t.equal(exists, false, 'nothing is migrated while another holds the lock')
    await holder`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`
    const first = await finished
    t.equal(first.code, 0, `first run: ${first.output}`)
  } else {
    const first = await runToExit(startMigrate(env))
    t.equal(first.code, 0, `first run: ${first.output}`)
  }

  const afterFirst = await inspect(databaseUrl, dataDir)
  const journal = JSON.parse(await readFile(join(REPO_ROOT, 'migrations', 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] }
  t.equal(afterFirst.applied.length, journal.entries.length, 'every committed migration is recorded once')
  const expected = Object.values(schema).filter(value => is(value, PgTable)).map(table => getTableName(table as PgTable))
  t.same(afterFirst.tables, sorted(expected), 'the schema\'s tables, and only those')

  const second = await runToExit(startMigrate(env))
  t.equal(second.code, 0, `second run: ${second.output}`)
  t.match(second.output, /migrations applied/, 'the second run says so')
  t.same(await inspect(databaseUrl, dataDir), afterFirst, 'the second run applied nothing')
})

/** The migrations recorded and the tables present; opened and closed each time (PGlite's files take one process). */
async function inspect (url: string | undefined, dataDir: string): Promise<{ applied: Array<{ hash: string, created_at: string }>, tables: string[] }> {
  const database = await openDatabase({ url, dataDir })
  try {
    const applied = rowsOf<{ hash: string, created_at: string }>(await database.db.execute(
      sql`select hash, created_at::text as created_at from drizzle.__drizzle_migrations order by id`))
    const tables = rowsOf<{ name: string }>(await database.db.execute(
      sql`select table_name::text as name from information_schema.tables where table_schema = 'public'`))
    return { applied, tables: sorted(tables.map(r => r.name)) }
  } finally {
    await database.close()
  }
}

test('npm run db:migrate: when run twice on a fresh database, then it applies the migrations and is idempotent', async (t) => {
  const dataDir = await tempDir(t)
  const databaseUrl = await testDatabaseUrl(t)
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', DATA_DIR: dataDir, ...(databaseUrl !== undefined ? { DATABASE_URL: databaseUrl } : {}) }
  for (let run = 1; run <= 2; run++) {
    const { code, output } = await runToExit(spawn(process.execPath, ['--import', 'tsx', MIGRATE], { cwd: SPAWN_CWD, env, stdio: ['ignore', 'pipe', 'pipe'] }))
    t.equal(code, 0, `run ${run}: ${output}`)
    t.match(output, /migrations applied/)
  }
  const database = await openDatabase({ url: databaseUrl, dataDir })
  t.teardown(async () => { await database.close() })
  const rows = rowsOf<{ users_table: string | null }>(await database.db.execute(sql`select to_regclass('public.users')::text as users_table`))
  t.equal(rows[0].users_table, 'users', 'the users table exists')
})
