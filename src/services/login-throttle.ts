import { createHash } from 'node:crypto'
import { sql } from '../db/orm.js'
import type { SQL } from 'drizzle-orm'
import type { Redis } from 'ioredis'
import { preparedStatement } from '../adapters/drizzle-prepared-statement.js'
import type { Database } from '../db/client.js'
import { RATE_LIMIT_UNAVAILABLE } from '../errors.js'

export interface ThrottleSettings {
  /** Attempts let through per window before the first refusal; 0 turns the throttle off. */
  maxFailures: number
  /** A count is forgotten this long after its last attempt, or after the refusal that attempt started. */
  windowSeconds: number
  maxDelaySeconds: number
  /** How long an address that logged in to an account stays exempt from that account's refusals. */
  trustedSeconds: number
}

/** The first refusal's length; each attempt counted after it (from a trusted address, or once it is over) doubles it. */
export const FIRST_DELAY_SECONDS = 30
// 2^20 times the first delay is more than a year: the cap (at most a day) is always reached before.
const MAX_DOUBLINGS = 20

/** The refusal that follows the nth attempt counted, in seconds; 0 below the limit. */
export function delaySeconds (settings: ThrottleSettings, n: number): number {
  if (n < settings.maxFailures) return 0
  return Math.min(settings.maxDelaySeconds, FIRST_DELAY_SECONDS * 2 ** Math.min(n - settings.maxFailures, MAX_DOUBLINGS))
}

/** Where the counts live, shared by every instance: PostgreSQL, or Redis when REDIS_URL is set. */
export interface ThrottleStore {
  /**
   * One atomic step: counts an attempt on `key`, unless the key is held back and `ip` is not trusted for it.
   * 0: counted, go ahead; else the seconds until the key may be tried again.
   */
  attempt: (key: string, ip: string) => Promise<number>
  /** The password was right: the count is forgotten and `ip` is trusted for the key. */
  succeeded: (key: string, ip: string) => Promise<void>
  /** Waits for background work (pruning) under way. */
  close?: () => Promise<void>
}

export interface Throttled {
  ok: false
  reason: 'throttled'
  retryAfterSeconds: number
}

export interface LoginThrottle {
  /**
   * Runs `check` (a password check) unless the account is held back. An attempt counts as a failure from the moment
   * it is let through, so that instances racing cannot let more through than the limit; `check` answering ok (the
   * right password) takes it back and trusts the address; anything else (wrong password, disabled account, an error
   * or a client gone before the answer) leaves it counted.
   */
  guard: <T extends { ok: boolean }>(login: string, ip: string, check: () => Promise<T>) => Promise<T | Throttled>
  close: () => Promise<void>
}

/**
 * The key of a login: a SHA-256 of it as typed, lowercased, with no lookup of the account (so an unknown account is
 * throttled like any other, and the throttle tells nothing about which exist). Never the text: people type
 * passwords into the username field.
 */
export const throttleKey = (login: string): string => createHash('sha256').update(login.toLowerCase()).digest('base64url')

export function createLoginThrottle (store: ThrottleStore | undefined): LoginThrottle {
  return {
    async guard (login, ip, check) {
      if (store === undefined) return await check()
      const key = throttleKey(login)
      const wait = await store.attempt(key, ip)
      if (wait > 0) return { ok: false, reason: 'throttled', retryAfterSeconds: wait }
      const result = await check()
      if (result.ok) await store.succeeded(key, ip)
      return result
    },
    close: async () => { await store?.close?.() }
  }
}

/** How many attempts this instance counts between two prunes, and how many expired rows a prune deletes at most. */
const PRUNE_EVERY = 100
const PRUNE_BATCH = 1000

/**
 * Counts in PostgreSQL. An attempt is one INSERT ... ON CONFLICT DO UPDATE whose WHERE is the decision: a held-back
 * key's row is not updated (and the statement returns nothing) unless the address is trusted. Expired rows are
 * deleted in bounded batches every PRUNE_EVERY attempts, so logins of made-up names do not grow the table forever.
 */
export function createPostgresThrottleStore (db: Database, settings: ThrottleSettings, onPruneError: (error: unknown) => void = () => {}): ThrottleStore {
  // Validated integers (config.ts), written into the statements: they are the same on every call.
  const int = (value: number): SQL => sql.raw(String(Math.trunc(value)))
  const max = int(settings.maxFailures)
  const seconds = (value: number | SQL): SQL => sql`make_interval(secs => ${typeof value === 'number' ? int(value) : value})`
  const lockAfter = (n: SQL): SQL => sql`case when ${n} >= ${max} then now() + ${seconds(sql`least(${int(settings.maxDelaySeconds)}, ${int(FIRST_DELAY_SECONDS)} * power(2, least(${n} - ${max}, ${int(MAX_DOUBLINGS)})))`)} end`
  const forgetAfter = (n: SQL): SQL => sql`coalesce(${lockAfter(n)}, now()) + ${seconds(settings.windowSeconds)}`
  const first = sql`1`
  const next = sql`(case when login_throttle.forget_at <= now() then 1 else login_throttle.failures + 1 end)`
  const trusted = settings.trustedSeconds === 0
    ? sql`false`
    : sql`exists (select 1 from login_trusted_addresses where key_hash = login_throttle.key_hash
        and ip = ${sql.placeholder('ip')} and succeeded_at > now() - ${seconds(settings.trustedSeconds)})`

  const attempt = preparedStatement<{ failures: number }>(db, 'login_throttle_attempt', sql`
    insert into login_throttle (key_hash, failures, locked_until, forget_at)
    values (${sql.placeholder('key')}, 1, ${lockAfter(first)}, ${forgetAfter(first)})
    on conflict (key_hash) do update set failures = ${next}, locked_until = ${lockAfter(next)}, forget_at = ${forgetAfter(next)}
    where login_throttle.locked_until is null or login_throttle.locked_until <= now() or ${trusted}
    returning failures`)
  const retryAfter = preparedStatement<{ seconds: number }>(db, 'login_throttle_retry_after', sql`
    select greatest(1, ceil(extract(epoch from locked_until - now())))::int as seconds
    from login_throttle where key_hash = ${sql.placeholder('key')}`)
  const succeeded = preparedStatement(db, 'login_throttle_succeeded', settings.trustedSeconds === 0
    ? sql`delete from login_throttle where key_hash = ${sql.placeholder('key')}`
    : sql`
      with forgotten as (delete from login_throttle where key_hash = ${sql.placeholder('key')})
      insert into login_trusted_addresses (key_hash, ip, succeeded_at) values (${sql.placeholder('key')}, ${sql.placeholder('ip')}, now())
      on conflict (key_hash, ip) do update set succeeded_at = excluded.succeeded_at`)

  async function prune (): Promise<void> {
    // The outer conditions are checked again on a row changed meanwhile: a count that just started over stays.
    await db.execute(sql`delete from login_throttle where forget_at <= now() and key_hash in (
      select key_hash from login_throttle where forget_at <= now() limit ${int(PRUNE_BATCH)})`)
    await db.execute(sql`delete from login_trusted_addresses where succeeded_at <= now() - ${seconds(settings.trustedSeconds)}
      and (key_hash, ip) in (select key_hash, ip from login_trusted_addresses
        where succeeded_at <= now() - ${seconds(settings.trustedSeconds)} limit ${int(PRUNE_BATCH)})`)
  }
  let attempts = 0
  let pruning: Promise<void> | undefined

  return {
    async attempt (key, ip) {
      if (++attempts % PRUNE_EVERY === 0 && pruning === undefined) {
        pruning = prune().catch(onPruneError).finally(() => { pruning = undefined })
      }
      if ((await attempt({ key, ip })).length > 0) return 0
      const [row] = await retryAfter({ key })
      return row?.seconds ?? 1
    },
    async succeeded (key, ip) { await succeeded({ key, ip }) },
    async close () { await pruning }
  }
}

// KEYS[1]: the count (a hash: n, locked until in ms); KEYS[2]: this address's trust in the key. ARGV: max failures,
// window, first delay and max delay in ms. Redis's clock decides, the same for every instance. Answers 0 when the
// attempt is counted, else the ms until the key may be tried again. The key expires when the count is forgotten.
const ATTEMPT_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'n', 'locked')
local n = tonumber(state[1]) or 0
local locked = tonumber(state[2]) or 0
if locked > now and redis.call('EXISTS', KEYS[2]) == 0 then return locked - now end
n = n + 1
local max = tonumber(ARGV[1])
local lockedUntil = 0
if n >= max then lockedUntil = now + math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ math.min(n - max, ${MAX_DOUBLINGS})) end
redis.call('HSET', KEYS[1], 'n', string.format('%d', n), 'locked', string.format('%d', lockedUntil))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(lockedUntil, now) - now + tonumber(ARGV[2])))
return 0
`

interface ThrottleCommands {
  loginThrottleAttempt: (count: string, trust: string, max: number, windowMs: number, firstMs: number, maxMs: number) => Promise<number>
}

const unavailable = (error: unknown): Error =>
  Object.assign(new Error('Login throttle store unavailable'), { code: RATE_LIMIT_UNAVAILABLE, cause: error })

/**
 * Counts in Redis: a Lua script decides and counts in one step; keys expire with their counts. Redis not answering
 * is an error the error handlers answer 503 (fail closed: this is what stops password guessing).
 */
export function createRedisThrottleStore (redis: Redis, settings: ThrottleSettings, prefix = 'auth-service:login-throttle:'): ThrottleStore {
  redis.defineCommand('loginThrottleAttempt', { numberOfKeys: 2, lua: ATTEMPT_SCRIPT })
  const commands = redis as unknown as ThrottleCommands
  // Both keys of an account in one hash slot ({key}), should the Redis be a cluster.
  const countKey = (key: string): string => `${prefix}{${key}}`
  const trustKey = (key: string, ip: string): string => `${prefix}{${key}}:trusted:${ip}`
  const ms = (seconds: number): number => seconds * 1000

  return {
    async attempt (key, ip) {
      let wait: number
      try {
        wait = await commands.loginThrottleAttempt(countKey(key), trustKey(key, ip), settings.maxFailures,
          ms(settings.windowSeconds), ms(FIRST_DELAY_SECONDS), ms(settings.maxDelaySeconds))
      } catch (error) {
        throw unavailable(error)
      }
      return wait > 0 ? Math.max(1, Math.ceil(wait / 1000)) : 0
    },
    async succeeded (key, ip) {
      const multi = redis.multi().del(countKey(key))
      if (settings.trustedSeconds > 0) multi.set(trustKey(key, ip), '1', 'EX', settings.trustedSeconds)
      // exec() answers each command's error rather than throwing it.
      const failed = await multi.exec().then(results => results?.find(([error]) => error !== null)?.[0], (error: unknown) => error)
      if (failed !== undefined && failed !== null) throw unavailable(failed)
    }
  }
}
