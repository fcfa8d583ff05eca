import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { isIP } from 'node:net'

export const ConfigSchema = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], { default: 'development' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  HOST: Type.String({ minLength: 1, default: '0.0.0.0' }),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map(l => Type.Literal(l)), { default: 'info' }),
  // false, true, a hop count, or addresses and CIDR ranges (Fastify's trustProxy forms): see trustProxyOption.
  TRUST_PROXY: Type.String({ default: 'false' }),
  // Browser origins allowed to call the API (scheme://host[:port], comma-separated; `*` alone: any). Unset: no CORS.
  CORS_ORIGINS: Type.Optional(Type.String()),
  BODY_LIMIT: Type.Integer({ minimum: 1024, maximum: 1048576, default: 16384 }),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  DATABASE_POOL_MAX: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
  DATABASE_PREPARED_STATEMENTS: Type.Boolean({ default: true }),
  // The longest wait for PostgreSQL per step (connecting, a pooled connection, each query): then 503, never a hang.
  DATABASE_TIMEOUT_MS: Type.Integer({ minimum: 200, maximum: 60000, default: 1500 }),
  // How long a start waits for DATABASE_URL to accept connections (a database starting beside the service); 0: one try.
  DATABASE_START_TIMEOUT_SECONDS: Type.Integer({ minimum: 0, maximum: 3600, default: 60 }),
  DATA_DIR: Type.String({ minLength: 1, default: './data' }),
  MIGRATE_ON_START: Type.Boolean({ default: true }),
  JWT_SECRET: Type.Optional(Type.String()),
  JWT_PRIVATE_KEY: Type.Optional(Type.String()),
  JWT_PRIVATE_KEY_FILE: Type.Optional(Type.String({ minLength: 1 })),
  JWT_VERIFY_KEYS: Type.Optional(Type.String()),
  JWT_VERIFY_KEYS_FILE: Type.Optional(Type.String({ minLength: 1 })),
  JWT_ISSUER: Type.String({ minLength: 1, default: 'auth-service' }),
  JWT_AUDIENCE: Type.String({ minLength: 1, default: 'auth-service' }),
  ACCESS_TOKEN_TTL: Type.Integer({ minimum: 30, maximum: 86400, default: 900 }),
  SESSION_ABSOLUTE_TTL: Type.Integer({ minimum: 60, maximum: 31536000, default: 2592000 }),
  SESSION_IDLE_TTL: Type.Integer({ minimum: 60, maximum: 31536000, default: 604800 }),
  REFRESH_REUSE_GRACE_SECONDS: Type.Integer({ minimum: 0, maximum: 60, default: 5 }),
  SESSION_SYNC_INTERVAL_MS: Type.Integer({ minimum: 100, maximum: 60000, default: 1000 }),
  // Past this without a successful re-read of ended sessions, protected routes answer 503 instead of trusting memory.
  SESSION_SYNC_MAX_STALENESS_SECONDS: Type.Integer({ minimum: 1, maximum: 86400, default: 60 }),
  // Open streams of GET /sessions/ended/stream per instance; beyond it, 503 with Retry-After.
  SESSION_FEED_MAX_SUBSCRIBERS: Type.Integer({ minimum: 1, maximum: 100000, default: 1000 }),
  USER_CACHE_TTL_MS: Type.Integer({ minimum: 0, maximum: 60000, default: 1000 }),
  ARGON2_MEMORY_KIB: Type.Integer({ minimum: 1024, maximum: 1048576, default: 19456 }),
  ARGON2_TIME_COST: Type.Integer({ minimum: 1, maximum: 20, default: 2 }),
  ARGON2_PARALLELISM: Type.Integer({ minimum: 1, maximum: 16, default: 1 }),
  PASSWORD_HASH_THREADS: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
  PASSWORD_HASH_QUEUE_MAX: Type.Integer({ minimum: 1, maximum: 100000, default: 64 }),
  RATE_LIMIT_ENABLED: Type.Boolean({ default: true }),
  RATE_LIMIT_WINDOW_SECONDS: Type.Integer({ minimum: 1, maximum: 86400, default: 60 }),
  RATE_LIMIT_MAX: Type.Integer({ minimum: 1, default: 300 }),
  RATE_LIMIT_TOKEN_MAX: Type.Integer({ minimum: 1, default: 20 }),
  // Refreshes (grant_type=refresh_token) have a budget of their own: a refresh is not a password guess.
  RATE_LIMIT_REFRESH_MAX: Type.Integer({ minimum: 1, default: 120 }),
  RATE_LIMIT_REGISTER_MAX: Type.Integer({ minimum: 1, default: 10 }),
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  REDIS_TIMEOUT_MS: Type.Integer({ minimum: 10, maximum: 10000, default: 250 }),
  METRICS_ENABLED: Type.Boolean({ default: true }),
  // Metrics never share the public port: they tell about the service's traffic and its database.
  METRICS_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 9091 }),
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 0, maximum: 600000, default: 10000 }),
  ADMIN_USERNAME: Type.Optional(Type.String({ minLength: 1 })),
  ADMIN_EMAIL: Type.Optional(Type.String({ minLength: 1 })),
  ADMIN_PASSWORD_FILE: Type.Optional(Type.String({ minLength: 1 })),
  PASSWORD_MIN_LENGTH: Type.Integer({ minimum: 8, maximum: 128, default: 8 }),
  PUBLIC_URL: Type.Optional(Type.String({ pattern: '^https?://[^\\s/?#]+(/[^\\s?#]*)?$' })),
  PASSWORD_RESET_TTL: Type.Integer({ minimum: 60, maximum: 86400, default: 1800 }),
  EMAIL_VERIFY_TTL: Type.Integer({ minimum: 60, maximum: 2592000, default: 86400 }),
  REQUIRE_VERIFIED_EMAIL: Type.Boolean({ default: false }),
  SMTP_URL: Type.Optional(Type.String({ pattern: '^smtps?://' })),
  MAIL_FROM: Type.String({ minLength: 3, default: 'Auth Service <no-reply@localhost>' }),
  RATE_LIMIT_EMAIL_MAX: Type.Integer({ minimum: 1, default: 5 }),
  // Per account, across instances (services/login-throttle.ts); 0 failures turns the throttle off.
  LOGIN_THROTTLE_MAX_FAILURES: Type.Integer({ minimum: 0, maximum: 1000, default: 10 }),
  LOGIN_THROTTLE_WINDOW_SECONDS: Type.Integer({ minimum: 1, maximum: 86400, default: 900 }),
  LOGIN_THROTTLE_MAX_DELAY_SECONDS: Type.Integer({ minimum: 1, maximum: 86400, default: 900 }),
  LOGIN_THROTTLE_TRUSTED_SECONDS: Type.Integer({ minimum: 0, maximum: 31536000, default: 2592000 })
})

export type Config = Static<typeof ConfigSchema>

/**
 * Defaults for a developer's machine, taken by unset settings when NODE_ENV=development (itself the default); the
 * schema's defaults are production's and the tests'. Loopback only, and limits a person trying the API by hand
 * does not hit.
 */
export const DEVELOPMENT_DEFAULTS: Partial<Record<keyof Config, string | number | boolean>> = {
  HOST: '127.0.0.1',
  RATE_LIMIT_TOKEN_MAX: 100,
  RATE_LIMIT_REGISTER_MAX: 100
}

/** The base of links in emails: PUBLIC_URL without a trailing slash, or this instance on localhost. */
export const publicUrl = (config: Pick<Config, 'PUBLIC_URL' | 'PORT'>): string =>
  (config.PUBLIC_URL ?? `http://localhost:${config.PORT}`).replace(/\/+$/, '')
export type ConfigInput = Partial<Record<keyof Config, string | number | boolean | undefined>>

export class ConfigError extends Error {
  constructor (public readonly problems: string[]) {
    super(`Invalid configuration:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
  }
}

// Secrets that appear in tutorials, examples and our own .env.example: never accepted.
const WELL_KNOWN_SECRETS = new Set([
  '09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7',
  'change-me-to-a-long-random-secret-of-at-least-32-bytes',
  'your-256-bit-secret',
  'your-secret-key',
  'supersecretkeythatshouldbechanged',
  'secret',
  'changeme',
  'change-me'
])

export const MIN_SECRET_BYTES = 32
const SECRET_KEYS = new Set(['JWT_SECRET', 'DATABASE_URL', 'JWT_PRIVATE_KEY', 'JWT_VERIFY_KEYS', 'REDIS_URL', 'SMTP_URL'])

export function secretProblem (secret: string): string | undefined {
  if (Buffer.byteLength(secret, 'utf8') < MIN_SECRET_BYTES) {
    return `must be at least ${MIN_SECRET_BYTES} bytes (generate one with: openssl rand -base64 48)`
  }
  if (WELL_KNOWN_SECRETS.has(secret.toLowerCase()) || new Set(secret).size < 8) {
    return 'is a well-known or low-entropy value; generate one with: openssl rand -base64 48'
  }
  return undefined
}

const BOOLEAN_WORDS: Record<string, boolean> = { true: true, false: false, 1: true, 0: false, yes: true, no: false, on: true, off: false }

function coerce (key: string, value: unknown): unknown {
  if (typeof value !== 'string') return value
  const type = (ConfigSchema.properties as Record<string, { type?: string }>)[key]?.type
  if (type === 'integer') return /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : value
  if (type === 'boolean') return BOOLEAN_WORDS[value.trim().toLowerCase()] ?? value
  return value
}

/**
 * Reads the settings from an environment-like object: unknown keys are ignored, empty strings count as unset.
 * Throws a ConfigError naming every variable that is wrong, so the process stops before it listens.
 */
export function loadConfig (env: Record<string, unknown> = process.env): Config {
  const raw: Record<string, unknown> = {}
  for (const key of Object.keys(ConfigSchema.properties)) {
    const value = env[key]
    if (value !== undefined && value !== '') raw[key] = coerce(key, value)
  }
  if ((raw.NODE_ENV ?? 'development') === 'development') {
    for (const [key, value] of Object.entries(DEVELOPMENT_DEFAULTS)) raw[key] ??= value
  }
  const withDefaults = Value.Default(ConfigSchema, raw) as Record<string, unknown>
  const problems = [...Value.Errors(ConfigSchema, withDefaults)]
    .filter(e => e.path !== '' && !e.path.includes('/', 1))
    .map(e => {
      const key = e.path.slice(1)
      // Never echo a value that may hold a credential.
      const got = SECRET_KEYS.has(key) ? '' : ` (got ${JSON.stringify(withDefaults[key])})`
      const choices = (ConfigSchema.properties as Record<string, { anyOf?: Array<{ const: string }> }>)[key]?.anyOf
      const message = choices !== undefined ? `must be one of ${choices.map(c => c.const).join(', ')}` : e.message.toLowerCase()
      return `${key}: ${message}${got}`
    })
  // A union reports one line per member: keep the first for each variable.
  const unique = [...new Map(problems.map(p => [p.split(':')[0], p])).values()]
  const config = withDefaults as Config
  if (unique.length === 0) {
    if (config.JWT_SECRET !== undefined) {
      const problem = secretProblem(config.JWT_SECRET)
      if (problem !== undefined) unique.push(`JWT_SECRET: ${problem}`)
    }
    const proxyProblem = trustProxyProblem(config.TRUST_PROXY)
    if (proxyProblem !== undefined) unique.push(`TRUST_PROXY: ${proxyProblem}`)
    const corsProblem = corsOriginsProblem(config.CORS_ORIGINS)
    if (corsProblem !== undefined) unique.push(`CORS_ORIGINS: ${corsProblem}`)
    if (config.JWT_PRIVATE_KEY !== undefined && config.JWT_PRIVATE_KEY_FILE !== undefined) unique.push('JWT_PRIVATE_KEY_FILE: set either it or JWT_PRIVATE_KEY, not both')
    if (config.JWT_VERIFY_KEYS !== undefined && config.JWT_VERIFY_KEYS_FILE !== undefined) unique.push('JWT_VERIFY_KEYS_FILE: set either it or JWT_VERIFY_KEYS, not both')
    const admin = [config.ADMIN_USERNAME, config.ADMIN_EMAIL, config.ADMIN_PASSWORD_FILE]
    if (admin.some(v => v !== undefined) && admin.some(v => v === undefined)) {
      unique.push('ADMIN_USERNAME: set it with ADMIN_EMAIL and ADMIN_PASSWORD_FILE, all three or none')
    }
    // Each re-read of ended sessions must land well inside the staleness bound, or tokens are refused between re-reads.
    if (config.SESSION_SYNC_MAX_STALENESS_SECONDS * 1000 < 2 * config.SESSION_SYNC_INTERVAL_MS + config.DATABASE_TIMEOUT_MS) {
      unique.push('SESSION_SYNC_MAX_STALENESS_SECONDS: must be at least twice SESSION_SYNC_INTERVAL_MS plus DATABASE_TIMEOUT_MS')
    }
    if (config.NODE_ENV === 'production') {
      if (config.JWT_SECRET === undefined && config.JWT_PRIVATE_KEY === undefined && config.JWT_PRIVATE_KEY_FILE === undefined) {
        unique.push('JWT_SECRET: is required when NODE_ENV=production, unless JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE is set')
      }
      if (config.DATABASE_URL === undefined) unique.push('DATABASE_URL: is required when NODE_ENV=production')
      // Links in emails must point at the deployment, and a required verification needs a way to send it.
      if (config.SMTP_URL !== undefined && config.PUBLIC_URL === undefined) unique.push('PUBLIC_URL: is required when NODE_ENV=production and SMTP_URL is set (the base of links in emails)')
      if (config.REQUIRE_VERIFIED_EMAIL && config.SMTP_URL === undefined) unique.push('REQUIRE_VERIFIED_EMAIL: needs SMTP_URL when NODE_ENV=production (nobody could verify their address)')
    }
  }
  if (unique.length > 0) throw new ConfigError(unique)
  return config
}

const proxyEntries = (value: string): string[] => value.split(',').map(entry => entry.trim())

function isAddressOrRange (entry: string): boolean {
  const [address, bits, extra] = entry.split('/')
  const family = isIP(address)
  if (family === 0 || extra !== undefined) return false
  if (bits === undefined) return true
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)
}

function trustProxyProblem (value: string): string | undefined {
  const word = value.trim().toLowerCase()
  if (word in BOOLEAN_WORDS || /^\d+$/.test(word)) return undefined
  const bad = proxyEntries(value).filter(entry => !isAddressOrRange(entry))
  return bad.length === 0 ? undefined : `must be true, false, a hop count, or IP addresses and CIDR ranges separated by commas (not ${bad.map(b => JSON.stringify(b)).join(', ')})`
}

/** CORS_ORIGINS as a list: exact origins as browsers send them, or just `*`; empty when unset. */
export const corsOrigins = (config: Pick<Config, 'CORS_ORIGINS'>): string[] =>
  (config.CORS_ORIGINS ?? '').split(',').map(entry => entry.trim()).filter(entry => entry !== '')

function corsOriginsProblem (value: string | undefined): string | undefined {
  const origins = corsOrigins({ CORS_ORIGINS: value })
  if (origins.includes('*')) return origins.length === 1 ? undefined : 'use * alone (any origin) or a list of origins, not both'
  for (const entry of origins) {
    let origin = ''
    try { origin = new URL(entry).origin } catch {}
    if (!/^https?:\/\//.test(origin)) return `must be http(s) origins such as https://app.example.com, separated by commas (not ${JSON.stringify(entry)})`
    // A browser's Origin header is compared byte for byte: no path, no default port, lower case.
    if (origin !== entry) return `write ${JSON.stringify(entry)} as the browser sends it: ${origin} (scheme://host[:port], no path)`
  }
  return undefined
}

/**
 * TRUST_PROXY as Fastify's trustProxy takes it: false (the default: X-Forwarded-For is ignored), true (trust every
 * peer: only when nothing but your proxy can reach the service), a number of proxy hops, or the proxies' addresses
 * and CIDR ranges (the safe form: a forwarded address counts only when the peer is one of them).
 */
export function trustProxyOption (config: Pick<Config, 'TRUST_PROXY'>): boolean | number | string[] {
  const word = config.TRUST_PROXY.trim().toLowerCase()
  if (word in BOOLEAN_WORDS) return BOOLEAN_WORDS[word]
  if (/^\d+$/.test(word)) return Number(word)
  return proxyEntries(config.TRUST_PROXY)
}

/**
 * The settings `npm run db:migrate` needs, and only those: the migration step of a deploy has no business with
 * signing keys. DATABASE_URL is still required in production.
 */
export function loadMigrationConfig (env: Record<string, unknown> = process.env): Pick<Config, 'DATABASE_URL' | 'DATA_DIR'> {
  // Validated by the same schema; outside production nothing else is required.
  const { DATABASE_URL, DATA_DIR } = loadConfig({ NODE_ENV: 'development', DATABASE_URL: env.DATABASE_URL, DATA_DIR: env.DATA_DIR })
  if (env.NODE_ENV === 'production' && DATABASE_URL === undefined) throw new ConfigError(['DATABASE_URL: is required when NODE_ENV=production'])
  return { DATABASE_URL, DATA_DIR }
}
