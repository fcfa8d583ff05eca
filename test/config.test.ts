import { test } from 'tap'
import { ConfigError, loadConfig } from '../src/config.js'

const STRONG = 'Zq3v8K1pX0r7Lm2Nw9Yt4Hb6Jc5Fd1Se'

function problemsOf (env: Record<string, string>): string[] {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  return []
}

test('loadConfig: when nothing is set, then the documented defaults apply', async (t) => {
  const config = loadConfig({})
  t.match(config, {
    NODE_ENV: 'development',
    PORT: 3000,
    // The development default (DEVELOPMENT_DEFAULTS, test/dev.test.ts); production's is 0.0.0.0.
    HOST: '127.0.0.1',
    DATA_DIR: './data',
    ACCESS_TOKEN_TTL: 900,
    ARGON2_MEMORY_KIB: 19456,
    ARGON2_TIME_COST: 2,
    ARGON2_PARALLELISM: 1,
    RATE_LIMIT_ENABLED: true,
    MIGRATE_ON_START: true
  })
  t.equal(config.DATABASE_URL, undefined)
  t.equal(config.JWT_SECRET, undefined)
})

test('loadConfig: when values are strings from the environment, then numbers and booleans are converted', async (t) => {
  const config = loadConfig({ PORT: '8080', RATE_LIMIT_ENABLED: 'false', MIGRATE_ON_START: '0', ACCESS_TOKEN_TTL: '60' })
  t.equal(config.PORT, 8080)
  t.equal(config.RATE_LIMIT_ENABLED, false)
  t.equal(config.MIGRATE_ON_START, false)
  t.equal(config.ACCESS_TOKEN_TTL, 60)
})

test('loadConfig: when values are invalid, then every variable is named with the reason', async (t) => {
  const problems = problemsOf({ PORT: 'abc', LOG_LEVEL: 'loud', RATE_LIMIT_ENABLED: 'maybe', DATABASE_URL: 'mysql://x' })
  t.equal(problems.length, 4)
  t.match(problems.join('\n'), /PORT: expected integer \(got "abc"\)/)
  t.match(problems.join('\n'), /LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent/)
  t.match(problems.join('\n'), /RATE_LIMIT_ENABLED: expected boolean/)
  t.match(problems.join('\n'), /DATABASE_URL: /)
  t.notMatch(problems.join('\n'), /mysql:\/\/x/, 'a database URL is never echoed: it may hold a password')
})

test('loadConfig: when the ended-session re-read interval does not fit the staleness bound, then SESSION_SYNC_MAX_STALENESS_SECONDS is named', async (t) => {
  // Re-read every minute and trusted for a minute: tokens would be refused for the moments each re-read takes.
  t.match(problemsOf({ SESSION_SYNC_INTERVAL_MS: '60000' }), [/SESSION_SYNC_MAX_STALENESS_SECONDS: must be at least twice SESSION_SYNC_INTERVAL_MS plus DATABASE_TIMEOUT_MS/])
  t.same(problemsOf({ SESSION_SYNC_INTERVAL_MS: '60000', SESSION_SYNC_MAX_STALENESS_SECONDS: '122' }), [])
  t.same(problemsOf({}), [], 'the defaults fit: 1 s re-reads, trusted for 60 s')
})

test('loadConfig: when JWT_SECRET is short or well known, then it is refused in any environment', async (t) => {
  t.match(problemsOf({ JWT_SECRET: 'too-short' }), [/JWT_SECRET: must be at least 32 bytes/])
  t.match(problemsOf({ JWT_SECRET: '09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7' }), [/JWT_SECRET: is a well-known/])
  t.match(problemsOf({ JWT_SECRET: 'a'.repeat(64) }), [/JWT_SECRET: is a well-known or low-entropy/])
  t.match(problemsOf({ JWT_SECRET: 'change-me-to-a-long-random-secret-of-at-least-32-bytes' }), [/JWT_SECRET/], 'the .env.example placeholder does not work')
  t.same(problemsOf({ JWT_SECRET: STRONG }), [])
})

test('loadConfig: when NODE_ENV=production, then JWT_SECRET and DATABASE_URL are required', async (t) => {
  t.same(problemsOf({ NODE_ENV: 'production' }), [
    'JWT_SECRET: is required when NODE_ENV=production, unless JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE is set',
    'DATABASE_URL: is required when NODE_ENV=production'
  ])
  t.same(problemsOf({ NODE_ENV: 'production', JWT_SECRET: STRONG, DATABASE_URL: 'postgres://u:p@db:5432/auth' }), [])
})
