import bcrypt from 'bcryptjs'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { createServer as createHttpServer } from 'node:http'
import { createServer } from 'node:net'
import { join, relative } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { Test } from 'tap'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse as LightMyResponse } from 'fastify'
import { sql } from 'drizzle-orm'
import postgres from 'postgres'
import { buildApp, type BuildOptions } from '../src/app.js'
import { ConfigSchema, loadConfig, type Config } from '../src/config.js'
import { openDatabase, type DatabaseHandle } from '../src/db/client.js'
import { loggerOptions } from '../src/logger.js'
import { checkResponse } from './openapi-check.js'

export const TEST_SECRET = 'test-secret-5f1d2c7a9b3e4d6f8a0b1c2d3e4f5a6b'

interface TestContext {
  teardown: (fn: () => unknown) => void
}

/**
 * A fresh database for one test: with TEST_DATABASE_URL, a new database on that server (dropped afterwards);
 * without it, undefined, and the app keeps an embedded PGlite in memory.
 */
export async function testDatabaseUrl (t: TestContext): Promise<string | undefined> {
  const serverUrl = process.env.TEST_DATABASE_URL
  if (serverUrl === undefined || serverUrl === '') return undefined
  const name = `auth_test_${randomBytes(6).toString('hex')}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  await admin.end()
  t.teardown(async () => {
    const cleanup = postgres(serverUrl, { max: 1, onnotice: () => {} })
    await cleanup.unsafe(`drop database if exists ${name} with (force)`)
    await cleanup.end()
  })
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return url.toString()
}

export async function tempDir (t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'auth-test-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** Test settings: cheap argon2 parameters, no rate limits, silent logs; overrides win. */
export function testConfig (overrides: Record<string, unknown> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    // Every test app's metrics listen on a free loopback port of their own (tests scrape app.metricsServer).
    HOST: '127.0.0.1',
    METRICS_PORT: 0,
    JWT_SECRET: TEST_SECRET,
    ARGON2_MEMORY_KIB: 1024,
    ARGON2_TIME_COST: 1,
    RATE_LIMIT_ENABLED: false,
    DATA_DIR: join(tmpdir(), 'auth-test-unused'),
    ...overrides
  })
}

export interface TestApp {
  app: FastifyInstance
  config: Config
}

let embedded: Promise<DatabaseHandle> | undefined

/** One in-memory PGlite per test process: starting one takes seconds, and tests never share names. */
export async function embeddedDatabase (): Promise<DatabaseHandle> {
  if (embedded === undefined) {
    const opened = migratedSnapshot().then(async (snapshot) => await openDatabase({ snapshot })).then(async (handle) => { await handle.migrate(); return handle })
    embedded = opened
    // A PGlite loaded from a snapshot keeps the process alive until it is closed: closed once every test has run.
    const { t: root } = await import('tap')
    root.teardown(async () => { await (await opened).close() })
  }
  return await embedded
}

/**
 * A migrated PGlite data directory, made once per set of migrations and PGlite version and kept in the temporary
 * directory: loading it takes a test process about a fifth of what initialising a new database does (5 to 15 s on a
 * busy 2-core machine, times some 60 test files). Made by whichever process needs it first; written whole or not at all.
 */
async function migratedSnapshot (): Promise<Blob> {
  const migrations = join(REPO_ROOT, 'migrations')
  const hash = createHash('sha256').update(readFileSync(join(REPO_ROOT, 'node_modules', '@electric-sql', 'pglite', 'package.json')))
  for (const file of readdirSync(migrations, { recursive: true }).map(String).sort()) {
    if (file.endsWith('.sql') || file.endsWith('.json')) hash.update(file).update(readFileSync(join(migrations, file)))
  }
  const path = join(tmpdir(), `auth-service-pglite-${hash.digest('hex').slice(0, 16)}.tar`)
  if (existsSync(path)) return new Blob([await readFile(path)])
  const { PGlite } = await import('@electric-sql/pglite')
  const client = await PGlite.create()
  try {
    const { drizzle } = await import('drizzle-orm/pglite')
    const { migrate } = await import('drizzle-orm/pglite/migrator')
    await migrate(drizzle({ client }), { migrationsFolder: migrations })
    const dump = await client.dumpDataDir('none')
    const partial = `${path}.${process.pid}`
    await writeFile(partial, Buffer.from(await dump.arrayBuffer()))
    await rename(partial, path)
    return dump
  } finally {
    await client.close()
  }
}

/**
 * Builds the whole service and closes it when the test ends: on a database of its own on the TEST_DATABASE_URL
 * server, or else on this process's embedded database.
 */
export async function build (t: TestContext, overrides: Record<string, unknown> = {}, options: BuildOptions = {}): Promise<FastifyInstance> {
  // A test that names its server (DATABASE_URL) gets no database of its own on TEST_DATABASE_URL and no embedded one.
  const named = overrides.DATABASE_URL !== undefined
  const databaseUrl = named ? undefined : await testDatabaseUrl(t)
  const config = testConfig({ DATABASE_URL: databaseUrl, ...overrides })
  const database = databaseUrl === undefined && !named ? await embeddedDatabase() : undefined
  const app = await buildApp(config, { database, ...options })
  t.teardown(async () => { await app.close() })
  await app.ready()
  checkEveryAnswer(app)
  return app
}

/**
 * Every answer a test receives through app.inject is checked against the committed openapi.json (status, content
 * type, body schema): the document cannot drift from what the service does. A mismatch fails the test that made it.
 */
export function checkEveryAnswer (app: FastifyInstance): void {
  const inject = app.inject.bind(app) as (options: InjectOptions | string) => Promise<LightMyResponse>
  app.inject = (async (options: InjectOptions | string) => {
    const res = await inject(options)
    const request = typeof options === 'string' ? { method: 'GET', url: options } : options
    const problem = checkResponse({
      method: request.method ?? 'GET',
      url: String(request.url ?? request.path ?? '/'),
      statusCode: res.statusCode,
      contentType: res.headers['content-type'] as string | undefined,
      body: res.body
    })
    if (problem !== undefined) throw new Error(`answer differs from openapi.json: ${problem}`)
    return res
  }) as unknown as FastifyInstance['inject']
}

/**
 * Two instances of the service on one database, as a scaled-out deploy runs: their own pools on the TEST_DATABASE_URL
 * server, or both on this process's embedded database. `overrides` go to both, `bOverrides` to the second only.
 */
export async function twoInstances (t: TestContext, overrides: Record<string, unknown> = {}, bOverrides: Record<string, unknown> = {}): Promise<[FastifyInstance, FastifyInstance]> {
  const a = await build(t, overrides)
  const url = a.config.DATABASE_URL
  const b = await build(t, { ...overrides, ...bOverrides, DATABASE_URL: url }, url === undefined ? { database: await embeddedDatabase() } : {})
  return [a, b]
}

/** A TCP port free on 127.0.0.1 right now, for a server that must be given its port up front. */
export async function freePort (): Promise<number> {
  const probe = createServer()
  await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as { port: number }
  await new Promise(resolve => probe.close(resolve))
  return port
}

let counter = 0
/** A username nobody else in this process has used. */
export function uniqueName (prefix = 'user'): string {
  counter += 1
  return `${prefix}_${process.pid}_${counter}`
}

export interface Registered {
  id: string
  username: string
  email: string
  password: string
}

export async function register (app: FastifyInstance, fields: Partial<Omit<Registered, 'id'>> = {}): Promise<Registered> {
  const username = fields.username ?? uniqueName()
  const body = { username, email: fields.email ?? `${username}@example.com`, password: fields.password ?? 'correct horse battery' }
  const res = await app.inject({ method: 'POST', url: '/auth/register', payload: body })
  if (res.statusCode !== 201) throw new Error(`register failed: ${res.statusCode} ${res.body}`)
  return { ...body, id: res.json().id }
}

export async function login (app: FastifyInstance, username: string, password: string): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/auth/token', payload: { username, password } })
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  return res.json().access_token
}

/** A JWT segment: the string itself, or anything else as JSON, in base64url. */
export const b64url = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

const segment = (token: string, index: number): Record<string, unknown> => JSON.parse(Buffer.from(token.split('.')[index], 'base64url').toString())
/** A JWT's header, read without verifying it. */
export const headerOf = (token: string): Record<string, unknown> => segment(token, 0)
/** A JWT's claims, read without verifying them. */
export const claimsOf = (token: string): Record<string, unknown> => segment(token, 1)

/** Signs a token by hand, so tests can forge any header and claims. */
export function forgeToken (header: Record<string, unknown>, payload: Record<string, unknown>, secret = TEST_SECRET, hashAlg = 'sha256'): string {
  const input = `${b64url(header)}.${b64url(payload)}`
  return `${input}.${createHmac(hashAlg, secret).update(input).digest('base64url')}`
}

/** The claims a valid token for this user carries, to start forging from. */
export function validClaims (userId: string, config: Pick<Config, 'JWT_ISSUER' | 'JWT_AUDIENCE'> = testConfig()): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return { sub: userId, sid: randomUUID(), preferred_username: 'someone', iat: now, exp: now + 300, iss: config.JWT_ISSUER, aud: config.JWT_AUDIENCE, jti: 'forged-' + now }
}

export const VALID_HEADER = { alg: 'HS256', typ: 'at+jwt' }

/** The whole service with its log lines kept in memory (LOG_LEVEL from the overrides, else info). */
export async function buildLogged (t: TestContext, overrides: Record<string, unknown> = {}): Promise<{ app: FastifyInstance, lines: string[], entries: () => Array<Record<string, unknown>> }> {
  const level = (overrides.LOG_LEVEL ?? 'info') as Config['LOG_LEVEL']
  const lines: string[] = []
  const stream = { write (line: string) { lines.push(line) } }
  const app = await build(t, { ...overrides, LOG_LEVEL: level }, { logger: { ...loggerOptions({ LOG_LEVEL: level }), stream } })
  return { app, lines, entries: () => lines.map(line => JSON.parse(line)) }
}

export const bearer = (token: string): { authorization: string } => ({ authorization: `Bearer ${token}` })

/** A POST with a form body, as OAuth2 clients send to the token and revocation endpoints. */
export const formPost = (url: string, fields: Record<string, string>, headers: Record<string, string> = {}) => ({
  method: 'POST' as const,
  url,
  headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  payload: new URLSearchParams(fields).toString()
})

export const me = async (app: FastifyInstance, accessToken: string): Promise<LightMyResponse> =>
  await app.inject({ method: 'GET', url: '/users/me', headers: bearer(accessToken) })

export const refresh = async (app: FastifyInstance, refreshToken: string): Promise<LightMyResponse> =>
  await app.inject(formPost('/auth/token', { grant_type: 'refresh_token', refresh_token: refreshToken }))

export const revoke = async (app: FastifyInstance, fields: Record<string, string>): Promise<LightMyResponse> =>
  await app.inject(formPost('/auth/revoke', fields))

export interface TokenPair {
  access: string
  refresh: string
  sid: string
}

export function pairOf (res: LightMyResponse): TokenPair {
  const body = res.json()
  return { access: body.access_token, refresh: body.refresh_token, sid: claimsOf(body.access_token).sid as string }
}

/** A password login by form that keeps the refresh token and the session id too (login() keeps the access token only). */
export async function loginPair (app: FastifyInstance, user: Pick<Registered, 'username' | 'password'>, userAgent = 'auth-test/1.0 (tap)'): Promise<TokenPair> {
  const res = await app.inject(formPost('/auth/token', { grant_type: 'password', username: user.username, password: user.password }, { 'user-agent': userAgent }))
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  return pairOf(res)
}

export type Assert = Pick<Test, 'equal' | 'same' | 'match' | 'ok'>

export const INVALID_CHALLENGE = 'Bearer error="invalid_token", error_description="Could not validate credentials"'
export const ENDED_CHALLENGE = 'Bearer error="invalid_token", error_description="Session has ended"'
export const REFRESH_REFUSED = 'Refresh token is invalid, expired or revoked'
export const REFRESH_RACED = 'Refresh token was already used by a concurrent request'

/** A 401 problem document with its WWW-Authenticate challenge. */
export function assertUnauthorized (t: Assert, res: LightMyResponse, expected: { challenge: string, detail: string, code?: string }, what = 'access token'): void {
  t.equal(res.statusCode, 401, `${what}: 401 (got ${res.statusCode} ${res.body.slice(0, 200)})`)
  t.equal(res.headers['www-authenticate'], expected.challenge, `${what}: challenge`)
  t.match(res.headers['content-type'], /^application\/problem\+json/, `${what}: problem document`)
  t.same(res.json(), { type: 'about:blank', title: 'Unauthorized', status: 401, detail: expected.detail, code: expected.code ?? 'invalid_token' }, `${what}: body`)
}

export const assertInvalidToken = (t: Assert, res: LightMyResponse, what?: string): void =>
  assertUnauthorized(t, res, { challenge: INVALID_CHALLENGE, detail: 'Could not validate credentials' }, what)

export const assertNotAuthenticated = (t: Assert, res: LightMyResponse, what?: string): void =>
  assertUnauthorized(t, res, { challenge: 'Bearer', detail: 'Not authenticated', code: 'not_authenticated' }, what)

export const assertSessionEnded = (t: Assert, res: LightMyResponse, what?: string): void =>
  assertUnauthorized(t, res, { challenge: ENDED_CHALLENGE, detail: 'Session has ended' }, what)

export function assertRefreshRefused (t: Assert, res: LightMyResponse, description = REFRESH_REFUSED, what = 'refresh'): void {
  t.equal(res.statusCode, 400, `${what}: 400 (got ${res.statusCode} ${res.body.slice(0, 200)})`)
  t.equal(res.headers['cache-control'], 'no-store', `${what}: no-store`)
  t.same(res.json(), { error: 'invalid_grant', error_description: description }, `${what}: invalid_grant`)
}

/**
 * What a busy machine may add to a timed wait (timers fire late; the service, its database and the test share two
 * cores): a time bound that is itself the behaviour under test is the promised time plus this, never the promise alone.
 */
export const TIMING_MARGIN_MS = 1000

/**
 * Asks `condition` every `intervalMs` until it holds and answers how many milliseconds that took; fails, naming `what`,
 * once `timeoutMs` has passed without it. A condition that throws ends the wait with its error.
 */
export async function eventually (condition: () => boolean | Promise<boolean>, options: { timeoutMs: number, intervalMs?: number, what?: string | (() => string) }): Promise<number> {
  const { timeoutMs, intervalMs = 20, what = 'the condition' } = options
  const started = performance.now()
  for (let attempts = 1; ; attempts++) {
    if (await condition()) return performance.now() - started
    const elapsed = performance.now() - started
    if (elapsed >= timeoutMs) {
      throw new Error(`${typeof what === 'function' ? what() : what}: not seen within ${timeoutMs} ms (${attempts} checks over ${Math.round(elapsed)} ms)`)
    }
    await sleep(Math.min(intervalMs, timeoutMs - elapsed))
  }
}

/** The rows of db.execute(): postgres.js answers an array, PGlite an object that holds them. */
export function rowsOf<T> (result: unknown): T[] {
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[]
}

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url))
export const SERVER = join(REPO_ROOT, 'src', 'server.ts')
export const MIGRATE = join(REPO_ROOT, 'src', 'migrate.ts')

export const sorted = (values: Iterable<string>): string[] => [...values].sort()

/** Every setting of src/config.ts, sorted. */
export const SETTINGS = sorted(Object.keys(ConfigSchema.properties))

export const settingDefault = (key: string): unknown => (ConfigSchema.properties as Record<string, { default?: unknown }>)[key]?.default

/** Every file under a folder, as sorted paths relative to it. */
export async function listFiles (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter(e => e.isFile()).map(e => relative(dir, join(e.parentPath, e.name))).sort()
}

/** Waits for a child process to exit, killed after `timeoutMs`: its exit code and all it wrote to stdout and stderr. */
export async function runToExit (child: ChildProcess, timeoutMs = 120_000): Promise<{ code: number | null, output: string }> {
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

/**
 * The working directory of the processes tests spawn (the server, the commands): test/, not the checkout, whose
 * `.env` (a developer's, with their DATABASE_URL) the entry points would read. node still finds tsx from there.
 */
export const SPAWN_CWD = join(REPO_ROOT, 'test')

/** The real server process (src/server.ts under tsx) with only the given environment. */
export function spawnServer (env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', SERVER], {
    cwd: SPAWN_CWD,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: '0', METRICS_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
}

export interface Running {
  child: ChildProcess
  url: string
  output: () => string
}

/** Starts the real server process and waits for it to listen. */
export async function startServer (env: Record<string, string>): Promise<Running> {
  return await untilListening(spawnServer(env), 'server')
}

/** A child process that prints Fastify's "Server listening at" line: resolves with its URL once it does. */
export async function untilListening (child: ChildProcess, what: string): Promise<Running> {
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  let url: string | undefined
  try {
    await eventually(() => {
      if (child.exitCode !== null) throw new Error(`it exited with ${child.exitCode}`)
      url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1]
      return url !== undefined
    }, { timeoutMs: 60_000, intervalMs: 50, what: '"Server listening" in its output' })
  } catch (error) {
    child.kill('SIGKILL')
    throw new Error(`${what} did not start: ${(error as Error).message}\n${output}`)
  }
  return { child, url: url as string, output: () => output }
}

/** A server that counts the requests it gets: a token header pointing at it must never be followed. */
export async function trapServer (t: Test): Promise<{ url: string, requests: () => number }> {
  let requests = 0
  const trap = createHttpServer((_req, res) => { requests++; res.end('{"keys":[]}') })
  trap.listen(0, '127.0.0.1')
  await once(trap, 'listening')
  t.teardown(() => { trap.close() })
  return { url: `http://127.0.0.1:${(trap.address() as { port: number }).port}`, requests: () => requests }
}

export async function stopServer (server: Running): Promise<number | null> {
  if (server.child.exitCode !== null) return server.child.exitCode
  const exited = once(server.child, 'exit')
  server.child.kill('SIGTERM')
  const [code] = await exited
  return code as number | null
}

// Debian's redis-server (apt-get install redis-server); REDIS_SERVER points at another.
const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server'

/** A real redis-server on 127.0.0.1, nothing persisted, killed when the test ends. */
export async function startRedis (t: Test): Promise<{ url: string, pid: number, kill: () => Promise<void> }> {
  t.ok(existsSync(REDIS_SERVER), `redis-server at ${REDIS_SERVER} (apt-get install redis-server, or set REDIS_SERVER)`)
  const port = await freePort()
  const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGCONT')
    child.kill('SIGKILL')
    await exited
  }
  t.teardown(kill)
  await eventually(() => {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`)
    return output.includes('Ready to accept connections')
  }, { timeoutMs: 10_000, what: () => `redis-server ready to accept connections (its output: ${output})` })
  return { url: `redis://127.0.0.1:${port}`, pid: child.pid as number, kill }
}

/** Gives a user a role straight in the database (a test's first administrator, a role defined in SQL). */
export async function grantRole (app: FastifyInstance, userId: string, role: string): Promise<void> {
  await app.database.db.execute(sql`insert into user_roles (user_id, role_name) values (${userId}::uuid, ${role})`)
}

/** A registered user made an administrator, with an access token holding the admin scopes. */
export async function registerAdmin (app: FastifyInstance): Promise<Registered & { token: string }> {
  const user = await register(app)
  await grantRole(app, user.id, 'admin')
  return { ...user, token: (await loginPair(app, user)).access }
}

/** Inject options sent with a bearer token. */
export const as = (token: string, options: InjectOptions): InjectOptions => ({ ...options, headers: { ...options.headers, ...bearer(token) } })

/** A bcrypt hash as another app stored it (passlib writes $2b$, PHP $2y$, old libraries $2a$: one algorithm). */
export function bcryptHash (password: string, { cost, version = '2b' }: { cost: number, version?: '2a' | '2b' | '2y' }): string {
  return bcrypt.hashSync(password, cost).replace(/^\$2[aby]\$/, `$${version}$`)
}

export interface PostgresCluster {
  url: string
  dataDir: string
  /** The postmaster's process id: the first line of <data>/postmaster.pid. */
  postmasterPid: () => number
  /** The postmaster's children (backends, checkpointer, WAL writer...), from /proc. */
  backendPids: () => number[]
  /** pg_ctl stop -m immediate: every connection drops at once. */
  stop: () => Promise<void>
  /** pg_ctl start again, on the same port. */
  start: () => Promise<void>
  /** SIGSTOP to the postmaster and each child: connections stay open and nothing answers. */
  freeze: () => Promise<void>
  /** SIGCONT to the processes freeze() stopped. */
  thaw: () => void
}

const run = promisify(execFile)

/** The newest installed PostgreSQL's bin directory (Debian's layout), or PG_BIN. */
function postgresBin (): string {
  if (process.env.PG_BIN !== undefined) return process.env.PG_BIN
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').filter(v => existsSync(`/usr/lib/postgresql/${v}/bin/pg_ctl`)) : []
  if (versions.length === 0) throw new Error('no PostgreSQL in /usr/lib/postgresql (apt-get install postgresql, or set PG_BIN)')
  return `/usr/lib/postgresql/${versions.sort((x, y) => Number(x) - Number(y)).at(-1) as string}/bin`
}

/** Processes whose parent is `ppid`, with their state letter (T: stopped). */
function childProcesses (ppid: number): Array<{ pid: number, state: string }> {
  const children = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let stat: string
    try { stat = readFileSync(`/proc/${name}/stat`, 'utf8') } catch { continue }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
    const [state, parent] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(parent) === ppid) children.push({ pid: Number(name), state })
  }
  return children
}

const processState = (pid: number): string | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
  } catch { return undefined }
}

/**
 * A PostgreSQL cluster of the test's own on a free loopback port, as .ci/start-postgres.sh starts one (as the postgres
 * user when root, fsync off), to stop, start, freeze and thaw; stopped and removed when the test ends.
 */
export async function startPostgresCluster (t: TestContext): Promise<PostgresCluster> {
  const bin = postgresBin()
  const root = process.getuid?.() === 0
  const dir = await mkdtemp(join(tmpdir(), 'auth-pg-'))
  const dataDir = join(dir, 'data')
  const port = await freePort()
  const asPostgres = async (command: string): Promise<void> => {
    // PostgreSQL refuses to run as root.
    await (root ? run('su', ['postgres', '-s', '/bin/sh', '-c', command], { timeout: 60_000 }) : run('/bin/sh', ['-c', command], { timeout: 60_000 }))
  }
  if (root) await run('chown', ['postgres', dir])
  let running = false
  let frozen: number[] = []

  const postmasterPid = (): number => {
    const [pid, data] = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')
    // Only this cluster's processes are ever signalled.
    if (data !== dataDir) throw new Error(`postmaster.pid names ${data}, not ${dataDir}`)
    return Number(pid)
  }
  const thaw = (): void => {
    for (const pid of frozen.reverse()) {
      try { process.kill(pid, 'SIGCONT') } catch {}
    }
    frozen = []
  }
  const cluster: PostgresCluster = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dataDir,
    postmasterPid,
    backendPids: () => childProcesses(postmasterPid()).map(c => c.pid),
    stop: async () => {
      await asPostgres(`'${bin}/pg_ctl' -D '${dataDir}' -m immediate -w stop >/dev/null`)
      running = false
    },
    start: async () => {
      await asPostgres(`'${bin}/pg_ctl' -D '${dataDir}' -l '${dir}/log' -w -o "-c listen_addresses=127.0.0.1 -p ${port} -k '${dir}' -c fsync=off -c max_connections=200" start >/dev/null`)
      running = true
    },
    freeze: async () => {
      const postmaster = postmasterPid()
      process.kill(postmaster, 'SIGSTOP')
      frozen.push(postmaster)
      // A stopped postmaster forks no more children: once it is seen stopped, the list of them is complete.
      await eventually(() => processState(postmaster) === 'T', { timeoutMs: 5000, intervalMs: 5, what: `postmaster ${postmaster} stopped` })
      for (const { pid } of childProcesses(postmaster)) {
        try { process.kill(pid, 'SIGSTOP'); frozen.push(pid) } catch {}
      }
    },
    thaw
  }
  t.teardown(async () => {
    thaw()
    if (running) await cluster.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })
  await asPostgres(`'${bin}/initdb' -D '${dataDir}' -U postgres -A trust --no-sync >/dev/null`)
  await cluster.start()
  return cluster
}
