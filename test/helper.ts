import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse as LightMyResponse } from 'fastify'
import postgres from 'postgres'
import { buildApp, type BuildOptions } from '../src/app.js'
import { loadConfig, type Config } from '../src/config.js'
import { openDatabase, type DatabaseHandle } from '../src/db/client.js'
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
  embedded ??= openDatabase({}).then(async (handle) => { await handle.migrate(); return handle })
  return await embedded
}

/**
 * Builds the whole service and closes it when the test ends: on a database of its own on the TEST_DATABASE_URL
 * server, or else on this process's embedded database.
 */
export async function build (t: TestContext, overrides: Record<string, unknown> = {}, options: BuildOptions = {}): Promise<FastifyInstance> {
  const databaseUrl = await testDatabaseUrl(t)
  const config = testConfig({ DATABASE_URL: databaseUrl, ...overrides })
  const database = databaseUrl === undefined ? await embeddedDatabase() : undefined
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

const b64url = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

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
