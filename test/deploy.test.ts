// Deployment files against the code: docker-compose.yml and its env files, the README settings table and
// .env.example against the one settings schema; the committed migrations against src/db/schema.ts (drizzle-kit);
// `npm run db:migrate` on a fresh database; the Dockerfile and .dockerignore against what the build needs.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { cp, readdir, readFile, writeFile } from 'node:fs/promises'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import { getTableName, is, sql } from 'drizzle-orm'
import { PgTable } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import { parse } from 'yaml'
import { ConfigSchema, loadConfig, loadMigrationConfig } from '../src/config.js'
import { MIGRATION_LOCK_KEY, openDatabase } from '../src/db/client.js'
import * as schema from '../src/db/schema.js'
import { tempDir, testDatabaseUrl } from './helper.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SCHEMA_FILE = join(ROOT, 'src', 'db', 'schema.ts')
const DRIZZLE_KIT = join(ROOT, 'node_modules', '.bin', 'drizzle-kit')
const SETTINGS = Object.keys(ConfigSchema.properties).sort()
const PROPERTIES = ConfigSchema.properties as Record<string, { default?: unknown }>
// A value that passes the JWT_SECRET checks, standing in for `${JWT_SECRET:?...}`.
const STRONG_SECRET = 'Zq3v8K1pX0r7Lm2Nw9Yt4Hb6Jc5Fd1Se-deploy-test'

const sorted = (values: Iterable<string>): string[] => [...values].sort()
const duplicates = (values: string[]): string[] => values.filter((value, i) => values.indexOf(value) !== i)

// ---------------------------------------------------------------------------------------------------------------
// docker-compose.yml

type Json = Record<string, unknown>

interface ComposeService {
  name: string
  /** Runs the image built from our Dockerfile (build:), as opposed to a third-party image. */
  ours: boolean
  image: string | undefined
  /** Every variable the service gets: its env files' keys in order, then environment:, later ones winning. */
  env: Map<string, string | undefined>
  /** Variable name -> where it was set, for messages. */
  origin: Map<string, string>
  raw: Json
}

/** Keys and values of a docker-compose env file: KEY=VALUE lines, # comments, a bare KEY passes the shell's value. */
function parseEnvFile (text: string): Array<[string, string | undefined]> {
  const entries: Array<[string, string | undefined]> = []
  for (const line of text.split('\n')) {
    const trimmed = line.trim()
    if (trimmed === '' || trimmed.startsWith('#')) continue
    const eq = trimmed.indexOf('=')
    entries.push(eq === -1 ? [trimmed, undefined] : [trimmed.slice(0, eq).trim(), trimmed.slice(eq + 1)])
  }
  return entries
}

function environmentEntries (environment: unknown): Array<[string, string | undefined]> {
  if (environment === undefined || environment === null) return []
  if (Array.isArray(environment)) {
    return environment.map(item => {
      const text = String(item)
      const eq = text.indexOf('=')
      return eq === -1 ? [text, undefined] : [text.slice(0, eq), text.slice(eq + 1)]
    })
  }
  return Object.entries(environment as Json).map(([key, value]) => [key, value === null ? undefined : String(value)])
}

async function loadCompose (text: string, baseDir: string): Promise<ComposeService[]> {
  // merge: YAML merge keys (<<: *anchor), which docker-compose honours.
  const document = parse(text, { merge: true }) as { services?: Record<string, Json> }
  const services: ComposeService[] = []
  for (const [name, raw] of Object.entries(document.services ?? {})) {
    const env = new Map<string, string | undefined>()
    const origin = new Map<string, string>()
    const envFiles = raw.env_file === undefined ? [] : Array.isArray(raw.env_file) ? raw.env_file.map(String) : [String(raw.env_file)]
    for (const file of envFiles) {
      for (const [key, value] of parseEnvFile(await readFile(resolve(baseDir, file), 'utf8'))) {
        env.set(key, value)
        origin.set(key, file)
      }
    }
    for (const [key, value] of environmentEntries(raw.environment)) {
      env.set(key, value)
      origin.set(key, 'environment:')
    }
    const image = typeof raw.image === 'string' ? raw.image : undefined
    services.push({ name, ours: raw.build !== undefined, image, env, origin, raw })
  }
  return services
}

/** Third-party images and the variables of their own they may be given. */
const THIRD_PARTY: Array<{ image: RegExp, own: RegExp | undefined }> = [
  { image: /^postgres:/, own: /^POSTGRES_/ },
  { image: /^redis:/, own: undefined }
]

/** Every variable a service sets that is not a setting of ConfigSchema (nor, for postgres, one of its own). */
function unknownVariables (services: ComposeService[]): string[] {
  const problems: string[] = []
  for (const service of services) {
    const thirdParty = service.ours ? undefined : THIRD_PARTY.find(entry => entry.image.test(service.image ?? ''))
    if (!service.ours && thirdParty === undefined) {
      problems.push(`${service.name}: neither built from our Dockerfile nor a known image (${service.image ?? 'no image'})`)
      continue
    }
    for (const key of service.env.keys()) {
      if (SETTINGS.includes(key)) {
        if (thirdParty !== undefined) problems.push(`${service.name}: ${key} is our setting, given to ${service.image ?? ''}`)
        continue
      }
      if (thirdParty?.own?.test(key) === true) continue
      problems.push(`${service.name}: ${key} (${service.origin.get(key) ?? '?'}) is not a setting of src/config.ts`)
    }
  }
  return problems
}

/** docker-compose durations: 12s, 1m30s, 500ms. */
function durationMs (value: unknown): number {
  const text = String(value)
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 }
  let total = 0
  let rest = text
  for (let i = 0; i < 10 && rest !== ''; i++) {
    const match = /^(\d+(?:\.\d+)?)(ms|us|h|m|s)/.exec(rest)
    if (match === null) throw new Error(`not a duration: ${text}`)
    total += Number(match[1]) * units[match[2]]
    rest = rest.slice(match[0].length)
  }
  if (rest !== '') throw new Error(`not a duration: ${text}`)
  return total
}

const COMPOSE_FILE = join(ROOT, 'docker-compose.yml')

test('docker-compose.yml: when any service of our image is given a variable, then it is a ConfigSchema setting (postgres keeps its POSTGRES_*)', async (t) => {
  const text = await readFile(COMPOSE_FILE, 'utf8')
  const services = await loadCompose(text, ROOT)
  const ours = services.filter(s => s.ours)
  t.ok(ours.length >= 3, `migrate, auth and auth-replica run our image (found ${ours.map(s => s.name).join(', ')})`)
  t.ok(ours.some(s => (s.raw.env_file ?? undefined) !== undefined), 'settings come from an env file')
  t.same(unknownVariables(services), [], 'every variable is a setting')

  // The check itself can fail: a misspelt setting in the env file, and ours given to postgres, are both caught.
  const broken = await loadCompose(text, ROOT)
  broken.find(s => s.name === 'auth')?.env.set('JWT_SECRETS', 'x')
  broken.find(s => s.name === 'db')?.env.set('DATABASE_URL', 'postgres://x')
  t.same(unknownVariables(broken).map(p => p.split(' ')[1]), ['DATABASE_URL', 'JWT_SECRETS'], 'a stray variable is reported')

  for (const service of ours) {
    const env: Record<string, string | undefined> = {}
    for (const [key, value] of service.env) env[key] = value?.startsWith('${') === true ? STRONG_SECRET : value
    // The migrate job reads only what migrating needs (no signing key); the servers read everything.
    if (service.name === 'migrate') t.doesNotThrow(() => loadMigrationConfig(env), 'migrate: its settings pass loadMigrationConfig')
    else t.doesNotThrow(() => loadConfig(env), `${service.name}: the settings it gets pass loadConfig`)
  }
})

test('docker-compose.yml: when the app starts, then a one-shot migrate service has completed first and the app does not migrate itself', async (t) => {
  const services = await loadCompose(await readFile(COMPOSE_FILE, 'utf8'), ROOT)
  const migrate = services.find(s => s.name === 'migrate')
  t.ok(migrate?.ours, 'migrate is built from our Dockerfile')
  t.same(migrate?.raw.command, ['node', 'dist/migrate.js'], 'migrate runs the compiled migrator')
  const apps = services.filter(s => s.ours && s.name !== 'migrate')
  t.same(apps.map(s => s.name).sort(), ['auth', 'auth-replica'], 'the app services')
  for (const app of apps) {
    t.equal(app.env.get('MIGRATE_ON_START'), 'false', `${app.name}: MIGRATE_ON_START=false`)
    t.match(app.raw.depends_on, { migrate: { condition: 'service_completed_successfully' }, db: { condition: 'service_healthy' } }, `${app.name} waits for migrate and db`)
  }
  const db = services.find(s => s.name === 'db')
  t.equal(db?.image, 'postgres:16-alpine', 'db image')
  t.ok((db?.raw.healthcheck as Json | undefined)?.test, 'db has a healthcheck')
  t.match(db?.raw.volumes, [/^pgdata:/], 'db keeps its files in a named volume')
})

test('docker-compose.yml: when JWT_SECRET is needed, then it comes only from the shell or .env, with no default and never from a committed env file', async (t) => {
  const services = await loadCompose(await readFile(COMPOSE_FILE, 'utf8'), ROOT)
  const migrate = services.find(s => s.name === 'migrate')
  t.notOk(migrate?.env.has('JWT_SECRET'), 'migrate: no signing key, it only migrates')
  for (const service of services.filter(s => s.ours && s.name !== 'migrate')) {
    t.match(service.env.get('JWT_SECRET'), /^\$\{JWT_SECRET:\?[^}]+\}$/, `${service.name}: \${JWT_SECRET:?message}`)
    t.equal(service.origin.get('JWT_SECRET'), 'environment:', `${service.name}: not from an env file`)
    for (const secret of ['JWT_PRIVATE_KEY', 'JWT_VERIFY_KEYS']) t.notOk(service.env.has(secret), `${service.name}: no ${secret} committed`)
  }
})

test('docker-compose.yml: when the scale profile runs, then Redis has a healthcheck and two replicas share it through REDIS_URL', async (t) => {
  const services = await loadCompose(await readFile(COMPOSE_FILE, 'utf8'), ROOT)
  const redis = services.find(s => s.name === 'redis')
  t.equal(redis?.image, 'redis:7-alpine', 'redis image')
  t.same(redis?.raw.profiles, ['scale'], 'redis only in the scale profile')
  t.ok((redis?.raw.healthcheck as Json | undefined)?.test, 'redis has a healthcheck')
  const replica = services.find(s => s.name === 'auth-replica')
  t.same(replica?.raw.profiles, ['scale'], 'replicas only in the scale profile')
  t.match(replica?.raw.deploy, { replicas: 2 }, 'two replicas')
  t.match(replica?.env.get('REDIS_URL'), /^redis:\/\/redis:6379/, 'REDIS_URL points at the profile\'s Redis')
  t.match(replica?.raw.depends_on, { redis: { condition: 'service_healthy' } }, 'replicas wait for a healthy Redis')
  for (const service of services.filter(s => !s.ours || s.name === 'auth' || s.name === 'migrate')) {
    t.notOk(service.env.has('REDIS_URL') && service.raw.profiles === undefined, `${service.name}: no REDIS_URL outside the profile`)
  }
})

test('docker-compose.yml: when Docker stops an app container, then stop_grace_period leaves SHUTDOWN_GRACE_MS room', async (t) => {
  const services = await loadCompose(await readFile(COMPOSE_FILE, 'utf8'), ROOT)
  for (const service of services.filter(s => s.ours)) {
    const grace = Number(service.env.get('SHUTDOWN_GRACE_MS') ?? PROPERTIES.SHUTDOWN_GRACE_MS.default)
    const stop = durationMs(service.raw.stop_grace_period ?? '10s')
    t.ok(stop > grace, `${service.name}: stop_grace_period ${stop} ms > SHUTDOWN_GRACE_MS ${grace} ms`)
    t.ok(stop <= grace + 10_000, `${service.name}: and only a bit above`)
  }
  t.equal(durationMs('1m30s'), 90_000, 'durations parse as docker-compose reads them')
})

// ---------------------------------------------------------------------------------------------------------------
// README settings table and .env.example

function readmeSettings (readme: string): Array<{ key: string, default: string }> {
  const start = readme.indexOf('\n## Settings\n')
  if (start === -1) throw new Error('README has no "## Settings" section')
  const end = readme.indexOf('\n## ', start + 1)
  const section = readme.slice(start, end === -1 ? undefined : end)
  const rows: Array<{ key: string, default: string }> = []
  for (const line of section.split('\n')) {
    const match = /^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|/.exec(line)
    if (match !== null) rows.push({ key: match[1], default: match[2].trim().replace(/^`(.*)`$/, '$1') })
  }
  return rows
}

const schemaDefault = (key: string): string => PROPERTIES[key]?.default === undefined ? 'unset' : String(PROPERTIES[key].default)

test('README: when the settings table is read, then it lists exactly the ConfigSchema keys with their defaults', async (t) => {
  const rows = readmeSettings(await readFile(join(ROOT, 'README.md'), 'utf8'))
  const keys = rows.map(r => r.key)
  t.same(duplicates(keys), [], 'no setting twice')
  t.same(sorted(keys), SETTINGS, 'the same keys as the schema')
  for (const row of rows) t.equal(row.default, schemaDefault(row.key), `${row.key}: default`)
  t.ok(rows.some(r => r.key === 'SHUTDOWN_GRACE_MS' && r.default === '10000'), 'rows are recognised')
})

test('.env.example: when its variables (set or commented out) are read, then they are exactly the ConfigSchema keys', async (t) => {
  const text = await readFile(join(ROOT, '.env.example'), 'utf8')
  const keys = [...text.matchAll(/^#? ?([A-Z][A-Z0-9_]*)=/gm)].map(m => m[1])
  t.same(duplicates(keys), [], 'no setting twice')
  t.same(sorted(keys), SETTINGS, 'the same keys as the schema')
})

// ---------------------------------------------------------------------------------------------------------------
// Migrations against src/db/schema.ts

interface Generated {
  output: string
  before: string[]
  after: string[]
  dir: string
}

async function listFiles (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter(e => e.isFile()).map(e => relative(dir, join(e.parentPath, e.name))).sort()
}

async function run (child: ChildProcess, timeoutMs: number): Promise<{ code: number | null, output: string }> {
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
  try {
    const [code] = await once(child, 'exit') as [number | null]
    return { code, output }
  } finally {
    clearTimeout(timer)
  }
}

/** `drizzle-kit generate` for this schema file against a copy of migrations/, in a temporary folder. */
async function generate (t: Parameters<typeof tempDir>[0], schemaFile: string): Promise<Generated> {
  const dir = await tempDir(t)
  await cp(join(ROOT, 'migrations'), join(dir, 'migrations'), { recursive: true })
  // `out` relative to the working directory: drizzle-kit 0.31 prefixes an absolute `out` with "./".
  await writeFile(join(dir, 'drizzle.config.json'), JSON.stringify({ dialect: 'postgresql', schema: schemaFile, out: './migrations' }))
  const before = await listFiles(join(dir, 'migrations'))
  const child = spawn(DRIZZLE_KIT, ['generate', '--config', 'drizzle.config.json'], {
    cwd: dir,
    // A schema file outside the project still finds drizzle-orm.
    env: { ...process.env, NODE_PATH: join(ROOT, 'node_modules') },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const { code, output } = await run(child, 120_000)
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
  const marker = "  endReason: text('end_reason')\n"
  t.ok(original.includes(marker), 'the sessions table still ends with endReason (update this test if not)')
  const file = join(await tempDir(t), 'schema.ts')
  await writeFile(file, original.replace(marker, "  endReason: text('end_reason'),\n  deployTestExtra: text('deploy_test_extra')\n"))
  const result = await generate(t, file)
  t.match(result.output, /Your SQL migration file/)
  const added = result.after.filter(f => !result.before.includes(f) && f.endsWith('.sql'))
  t.equal(added.length, 1, `one new migration (${added.join(', ')})`)
  if (added.length === 1) {
    t.match(await readFile(join(result.dir, 'migrations', added[0]), 'utf8'), /ALTER TABLE "sessions" ADD COLUMN "deploy_test_extra" text/)
  }
})

// ---------------------------------------------------------------------------------------------------------------
// npm run db:migrate

const rowsOf = <T>(result: unknown): T[] => (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[]

function startMigrate (env: Record<string, string>): ChildProcess {
  // Its own process group, so that a hung run can be ended with npm's children.
  return spawn('npm', ['run', '--silent', 'db:migrate'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
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
    const finished = run(child, 120_000)
    let waiting: Array<{ count: number }> = []
    for (let i = 0; i < 600 && child.exitCode === null; i++) {
      waiting = await holder<Array<{ count: number }>>`
        select count(*)::int as count from pg_stat_activity
        where datname = ${database} and pid <> ${pid} and wait_event_type = 'Lock' and wait_event = 'advisory'`
      if (waiting[0].count > 0) break
      await new Promise(resolve => setTimeout(resolve, 100))
    }
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
    const first = await run(startMigrate(env), 120_000)
    t.equal(first.code, 0, `first run: ${first.output}`)
  }

  const afterFirst = await inspect(databaseUrl, dataDir)
  const journal = JSON.parse(await readFile(join(ROOT, 'migrations', 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] }
  t.equal(afterFirst.applied.length, journal.entries.length, 'every committed migration is recorded once')
  const expected = Object.values(schema).filter(value => is(value, PgTable)).map(table => getTableName(table as PgTable))
  t.same(afterFirst.tables, sorted(expected), 'the schema\'s tables, and only those')

  const second = await run(startMigrate(env), 120_000)
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

// ---------------------------------------------------------------------------------------------------------------
// Dockerfile and .dockerignore

/** Docker's .dockerignore rules: the last matching pattern wins, and a pattern matching a parent folder matches. */
function dockerignore (text: string): (path: string) => boolean {
  const patterns = text.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#')).map(line => {
    const exclusion = line.startsWith('!')
    const pattern = (exclusion ? line.slice(1) : line).trim().replace(/^\.?\//, '').replace(/\/$/, '')
    const source = pattern.split('**').map(part => part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('.*')
    return { exclusion, regex: new RegExp(`^${source}$`) }
  })
  return (path) => {
    const parts = path.split('/')
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'))
    let excluded = false
    for (const { exclusion, regex } of patterns) {
      if (candidates.some(c => regex.test(c))) excluded = !exclusion
    }
    return excluded
  }
}

test('Dockerfile: when the build context is filtered by .dockerignore, then every file the Dockerfile copies is kept and the rest stays out', async (t) => {
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  const excluded = dockerignore(await readFile(join(ROOT, '.dockerignore'), 'utf8'))
  const sources = [...new Set([...dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap(m => m[1].trim().split(/\s+/).slice(0, -1)))]
  t.ok(sources.length >= 4, `COPY sources: ${sources.join(' ')}`)
  for (const source of sources) {
    t.notOk(excluded(source), `${source} is in the context`)
    const files = await listFiles(join(ROOT, source)).catch(() => [] as string[])
    const dropped = files.filter(f => excluded(`${source}/${f}`))
    t.same(dropped, [], `nothing under ${source} is left out`)
  }
  for (const path of ['node_modules/fastify/package.json', 'dist/server.js', '.git/HEAD', '.env', 'data/pglite/x', 'test/helper.ts', 'README.md', 'docker-compose.yml', 'bench/results/x.json', 'artifacts/x.png']) {
    t.ok(excluded(path), `${path} stays out of the context`)
  }
  t.notOk(dockerignore('*\n!src\n')('src/app.ts'), 'the matcher re-includes a folder\'s files')
  t.ok(dockerignore('src\n')('src/app.ts'), 'the matcher excludes a folder\'s files')
})

test('Dockerfile: when the runtime stage is read, then it has production dependencies and compiled JS only, a non-root user, a readiness HEALTHCHECK and node as PID 1', async (t) => {
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  const stages = dockerfile.split(/^(?=FROM )/m).filter(s => s.startsWith('FROM '))
  t.ok(stages.length >= 2, 'multi-stage')
  const runtime = stages[stages.length - 1].split('\n').filter(line => !line.startsWith('#')).join('\n')
  const copiedFrom = [...runtime.matchAll(/^COPY --from=(\S+) \/app\/(\S+)/gm)].map(m => [m[1], m[2]])
  t.same(copiedFrom, [['prod-deps', 'node_modules'], ['build', 'dist']], 'node_modules from the prod-deps stage, dist from the build')
  const prodDeps = stages.find(s => /^FROM \S+ AS prod-deps/m.test(s)) ?? ''
  t.match(prodDeps, /npm ci --omit=dev/, 'prod-deps installs without devDependencies')
  t.notMatch(runtime, /\b(tsx|ts-node|--import|--loader|src\b)/, 'no TypeScript source or loader at run time')
  const user = /^USER (\S+)/m.exec(runtime)?.[1]
  t.ok(user !== undefined && user !== 'root' && user !== '0', `runs as ${user ?? 'root'}`)
  t.match(runtime, /^HEALTHCHECK [^\n]*(\\\n[^\n]*)*\/health\/ready/m, 'HEALTHCHECK on /health/ready')
  const cmd = /^CMD (.+)$/m.exec(runtime)?.[1] ?? ''
  const argv = JSON.parse(cmd) as string[]
  t.equal(argv[0], 'node', 'exec-form CMD: node itself is PID 1 and receives SIGTERM')
  t.equal(argv.at(-1), 'dist/server.js', 'the compiled server')
  t.ok(argv.slice(1, -1).every(a => a.startsWith('--')), `only node flags in between (${argv.slice(1, -1).join(' ')})`)
  t.match(dockerfile, /node dist\/migrate\.js/, 'the migrate step is documented')
})
