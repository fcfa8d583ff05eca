import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'tap'
import type { FastifyInstance, LightMyRequestResponse as LightMyResponse } from 'fastify'
import { sql } from 'drizzle-orm'
import { throttleKey } from '../../src/services/login-throttle.js'
import { as, buildLogged, build, eventually, formPost, loginPair, register, rowsOf, startRedis, twoInstances, uniqueName, type Assert } from '../helper.js'

const PASSWORD = 'Marmot-Quarry-4417-Thistle'
const WRONG = 'not the password at all'
// request.ip, as the service sees it (inject's remoteAddress, TRUST_PROXY off).
const OWNER = '192.0.2.10'
const stranger = (i: number): string => `198.51.100.${i % 250}`

const passwordLogin = async (app: FastifyInstance, username: string, password: string, ip: string): Promise<LightMyResponse> =>
  await app.inject({ ...formPost('/auth/token', { grant_type: 'password', username, password }), remoteAddress: ip })

/** Wrong passwords for `username` from a new address each, in turn on each app; their statuses. */
async function failures (apps: FastifyInstance[], username: string, count: number, from = 0): Promise<number[]> {
  const statuses = []
  for (let i = 0; i < count; i++) statuses.push((await passwordLogin(apps[i % apps.length], username, WRONG, stranger(from + i))).statusCode)
  return statuses
}

const times = (count: number, status: number): number[] => Array.from({ length: count }, () => status)

/** A 429 of the token endpoint's throttle, with Retry-After within [min, max] seconds; that number. */
function assertThrottled (t: Assert, res: LightMyResponse, min: number, max: number, what = 'throttled'): number {
  t.equal(res.statusCode, 429, `${what}: 429`)
  const seconds = Number(res.headers['retry-after'])
  t.ok(seconds >= min && seconds <= max, `${what}: Retry-After ${String(res.headers['retry-after'])} within ${min}..${max}`)
  t.same(res.json(), { error: 'temporarily_unavailable', error_description: `Too many failed logins for this account; retry in ${seconds} seconds` })
  t.equal(res.headers['cache-control'], 'no-store')
  return seconds
}

/** One sample of the Prometheus text on the app's metrics port (0 when absent). */
async function metric (app: FastifyInstance, series: string): Promise<number> {
  const text = (await app.metricsServer.inject({ url: '/metrics' })).body
  const line = text.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}
const VERIFIES = 'auth_password_hash_duration_seconds_count{operation="verify"}'
const THROTTLED = 'auth_logins_total{outcome="throttled"}'

test('POST /auth/token: when an account has had 10 failed logins (the default), then the next is 429 temporarily_unavailable with Retry-After, even with the right password, without checking it, counted and audited', async (t) => {
  const { app, entries } = await buildLogged(t)
  const user = await register(app, { password: PASSWORD })
  t.same(await failures([app], user.username, 10), times(10, 401), 'ten failures, each from another address')
  const verifies = await metric(app, VERIFIES)

  const refused = await passwordLogin(app, user.username, PASSWORD, stranger(100))
  assertThrottled(t, refused, 20, 30, 'the right password, from a new address')
  assertThrottled(t, await passwordLogin(app, user.username.toUpperCase(), WRONG, stranger(101)), 20, 30, 'the login in another case')
  t.equal(await metric(app, VERIFIES), verifies, 'no password was verified')
  t.equal(await metric(app, THROTTLED), 2, 'auth_logins_total{outcome="throttled"}')
  const audits = entries().filter(e => (e.audit as { event?: string } | undefined)?.event === 'login_throttled')
  t.equal(audits.length, 2, 'one login_throttled audit event each')
  t.match(audits[0].audit, { event: 'login_throttled', ip: stranger(100), retry_after_seconds: Number(refused.headers['retry-after']) })
  t.notOk(JSON.stringify(audits).includes(user.username), 'never the login typed')
})

test('POST /auth/token: when an unknown account is throttled, then its answers are those of a known one (status, headers, body)', async (t) => {
  const app = await build(t)
  const known = await register(app, { password: PASSWORD })
  const unknown = uniqueName('nobody')
  t.same(await failures([app], known.username, 10), times(10, 401))
  t.same(await failures([app], unknown, 10), times(10, 401))
  const answers = [await passwordLogin(app, known.username, WRONG, stranger(50)), await passwordLogin(app, unknown, WRONG, stranger(51))]
  const shape = (res: LightMyResponse) => ({
    status: res.statusCode,
    headers: Object.keys(res.headers).filter(h => !['date', 'x-request-id'].includes(h)).sort(),
    retryAfter: Number(res.headers['retry-after']) >= 20,
    body: { ...res.json(), error_description: (res.json().error_description as string).replace(/\d+/, 'N') }
  })
  t.same(shape(answers[1]), shape(answers[0]), 'the same answer')
  t.equal(answers[0].statusCode, 429)
})

test('POST /auth/token: when failures go on from an address the owner logged in from, then it is not held back, each failure counted doubles Retry-After up to the cap, and its right password resets the count', async (t) => {
  const app = await build(t, { LOGIN_THROTTLE_MAX_DELAY_SECONDS: 100 })
  const user = await register(app, { password: PASSWORD })
  t.equal((await passwordLogin(app, user.username, PASSWORD, OWNER)).statusCode, 200, 'the owner logs in: the address is trusted')
  t.same(await failures([app], user.username, 10), times(10, 401))
  assertThrottled(t, await passwordLogin(app, user.username, PASSWORD, stranger(60)), 20, 30, 'after the 10th failure')

  t.equal((await passwordLogin(app, user.username, WRONG, OWNER)).statusCode, 401, 'the owner\'s address is checked: 401, not 429')
  assertThrottled(t, await passwordLogin(app, user.username, WRONG, stranger(61)), 50, 60, 'after the 11th')
  t.equal((await passwordLogin(app, user.username, WRONG, OWNER)).statusCode, 401)
  assertThrottled(t, await passwordLogin(app, user.username, WRONG, stranger(62)), 90, 100, 'after the 12th: 120 s, capped at 100')

  t.equal((await passwordLogin(app, user.username, PASSWORD, OWNER)).statusCode, 200, 'the owner logs in while others are held back')
  t.same(await failures([app], user.username, 10, 70), times(10, 401), 'the count started over')
  t.equal((await passwordLogin(app, user.username, PASSWORD, stranger(80))).statusCode, 429)
})

test('POST /auth/token: when a right password comes between failures, then the count starts over', async (t) => {
  const app = await build(t)
  const user = await register(app, { password: PASSWORD })
  t.same(await failures([app], user.username, 9), times(9, 401))
  t.equal((await passwordLogin(app, user.username, PASSWORD, OWNER)).statusCode, 200)
  t.same(await failures([app], user.username, 10, 20), times(10, 401), 'ten more failures from other addresses')
  t.equal((await passwordLogin(app, user.username, WRONG, stranger(40))).statusCode, 429, 'then the refusal')
})

test('POST /users/me/password: when current_password is wrong 10 times, then the account is throttled: 429 login_throttled there and at the token endpoint, without checking', async (t) => {
  const { app, entries } = await buildLogged(t)
  const user = await register(app, { password: PASSWORD })
  const { access } = await loginPair(app, user)
  const change = async (current: string, ip: string): Promise<LightMyResponse> =>
    await app.inject(as(access, { method: 'POST', url: '/users/me/password', payload: { current_password: current, new_password: 'Another-Password-9921-Fennel' }, remoteAddress: ip }))
  for (let i = 0; i < 10; i++) t.equal((await change(WRONG, stranger(i))).statusCode, 400, `wrong current_password ${i + 1}: 400`)

  const refused = await change(PASSWORD, stranger(20))
  t.equal(refused.statusCode, 429, 'the right current password is refused')
  t.match(refused.headers['content-type'], /^application\/problem\+json/)
  const seconds = Number(refused.headers['retry-after'])
  t.ok(seconds >= 20 && seconds <= 30, `Retry-After ${seconds}`)
  t.match(refused.json(), { status: 429, code: 'login_throttled', detail: `Too many failed logins for this account; retry in ${seconds} seconds` })
  t.ok(entries().some(e => (e.audit as { event?: string, reason?: string } | undefined)?.reason === 'throttled'), 'audited as password_change_failed: throttled')
  assertThrottled(t, await passwordLogin(app, user.username, PASSWORD, stranger(21)), 20, 30, 'the token endpoint, same account')
  t.equal((await passwordLogin(app, user.username, PASSWORD, '127.0.0.1')).statusCode, 200, 'where the owner logged in, it still works')
})

test('DELETE /users/me: when the password is wrong 10 times, then the account is throttled: 429 login_throttled there, the account stays, and the token endpoint refuses too', async (t) => {
  const app = await build(t)
  const user = await register(app, { password: PASSWORD })
  const { access } = await loginPair(app, user)
  const remove = async (password: string, ip: string): Promise<LightMyResponse> =>
    await app.inject(as(access, { method: 'DELETE', url: '/users/me', payload: { password }, remoteAddress: ip }))
  for (let i = 0; i < 10; i++) t.equal((await remove(WRONG, stranger(i))).statusCode, 400, `wrong password ${i + 1}: 400`)
  const refused = await remove(PASSWORD, stranger(20))
  t.equal(refused.statusCode, 429, 'the right password is refused unchecked')
  t.match(refused.json(), { status: 429, code: 'login_throttled' })
  t.ok(Number(refused.headers['retry-after']) >= 20, 'with Retry-After')
  t.equal((await app.inject(as(access, { method: 'GET', url: '/users/me' }))).statusCode, 200, 'the account was not deleted')
  assertThrottled(t, await passwordLogin(app, user.username, PASSWORD, stranger(21)), 20, 30, 'the token endpoint, same account')
})

test('login throttle settings: when failures are older than the window, then they no longer count; when MAX_FAILURES is 0, then nothing is counted; when TRUSTED_SECONDS is 0, then no address is exempt', async (t) => {
  const windowed = await build(t, { LOGIN_THROTTLE_MAX_FAILURES: 3, LOGIN_THROTTLE_WINDOW_SECONDS: 1 })
  const user = await register(windowed, { password: PASSWORD })
  t.same(await failures([windowed], user.username, 2), [401, 401])
  await sleep(1500)
  t.same(await failures([windowed], user.username, 3, 10), [401, 401, 401], 'the first two were forgotten')
  t.equal((await passwordLogin(windowed, user.username, WRONG, stranger(20))).statusCode, 429, 'three within the window: refused')

  const off = await build(t, { LOGIN_THROTTLE_MAX_FAILURES: 0 })
  const other = await register(off, { password: PASSWORD })
  t.same(await failures([off], other.username, 12), times(12, 401), 'never refused')
  const rows = rowsOf<{ count: number }>(await off.database.db.execute(sql`select count(*)::int as count from login_throttle where key_hash = ${throttleKey(other.username)}`))
  t.equal(rows[0].count, 0, 'nothing stored')
  t.equal((await passwordLogin(off, other.username, PASSWORD, stranger(30))).statusCode, 200)

  const untrusting = await build(t, { LOGIN_THROTTLE_TRUSTED_SECONDS: 0 })
  const third = await register(untrusting, { password: PASSWORD })
  t.equal((await passwordLogin(untrusting, third.username, PASSWORD, OWNER)).statusCode, 200)
  t.same(await failures([untrusting], third.username, 10), times(10, 401))
  t.equal((await passwordLogin(untrusting, third.username, PASSWORD, OWNER)).statusCode, 429, 'the owner\'s address is held back too')
})

test('login throttle storage: when counts have expired, then logins that come later delete them (in bounded batches), so made-up names do not grow the table forever', async (t) => {
  const app = await build(t, { LOGIN_THROTTLE_WINDOW_SECONDS: 1 })
  const junk = [uniqueName('junk'), uniqueName('junk'), uniqueName('junk')]
  const stored = async (): Promise<number> => rowsOf<{ count: number }>(await app.database.db.execute(
    sql`select count(*)::int as count from login_throttle where key_hash in (${sql.join(junk.map(name => sql`${throttleKey(name)}`), sql`, `)})`))[0].count
  for (const name of junk) await passwordLogin(app, name, WRONG, stranger(1))
  t.equal(await stored(), 3, 'each made-up name is counted')
  await sleep(1500)
  // This instance prunes every 100 attempts it counts.
  for (let i = 0; i < 100; i++) await passwordLogin(app, uniqueName('filler'), WRONG, stranger(i))
  await eventually(async () => await stored() === 0, { timeoutMs: 10_000, what: 'the expired counts deleted' })
  t.pass('deleted')
})

/** Concurrent wrong passwords for one new account, spread over the apps: how many were checked (401) and refused (429). */
async function race (apps: FastifyInstance[], count: number): Promise<{ checked: number, refused: number }> {
  const username = uniqueName('raced')
  const statuses = await Promise.all(Array.from({ length: count }, async (_, i) =>
    (await passwordLogin(apps[i % apps.length], username, WRONG, stranger(i))).statusCode))
  return { checked: statuses.filter(s => s === 401).length, refused: statuses.filter(s => s === 429).length }
}

test('login throttle across instances (PostgreSQL): when two instances take an account\'s failures, then they share one count, and of concurrent attempts exactly the limit is checked', async (t) => {
  const [a, b] = await twoInstances(t)
  const user = await register(a, { password: PASSWORD })
  t.same(await failures([a, b], user.username, 10), times(10, 401), 'five on each')
  assertThrottled(t, await passwordLogin(a, user.username, PASSWORD, stranger(90)), 20, 30, 'on a')
  assertThrottled(t, await passwordLogin(b, user.username, PASSWORD, stranger(91)), 20, 30, 'on b')
  t.same(await race([a, b], 16), { checked: 10, refused: 6 }, '16 at once: 10 checked, 6 refused')
})

test('login throttle with REDIS_URL: when two instances share a Redis, then they share one count (not in PostgreSQL), exactly the limit is checked, a trusted address doubles it; when Redis is gone, then 503 with Retry-After, never a 500', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await twoInstances(t, { REDIS_URL: redis.url, REDIS_TIMEOUT_MS: 200 })
  const user = await register(a, { password: PASSWORD })
  const { access } = await loginPair(a, user)
  t.equal((await passwordLogin(b, user.username, PASSWORD, OWNER)).statusCode, 200, 'the owner logs in on b')
  t.same(await failures([a, b], user.username, 10), times(10, 401))
  assertThrottled(t, await passwordLogin(b, user.username, PASSWORD, stranger(90)), 20, 30, 'on b')
  t.equal((await passwordLogin(a, user.username, WRONG, OWNER)).statusCode, 401, 'the owner\'s address, on a')
  assertThrottled(t, await passwordLogin(b, user.username, WRONG, stranger(91)), 50, 60, 'doubled, on b')
  t.same(await race([a, b], 16), { checked: 10, refused: 6 }, '16 at once: 10 checked, 6 refused')
  const rows = rowsOf<{ count: number }>(await a.database.db.execute(sql`select count(*)::int as count from login_throttle where key_hash = ${throttleKey(user.username)}`))
  t.equal(rows[0].count, 0, 'nothing counted in PostgreSQL')

  await redis.kill()
  const token = await passwordLogin(a, user.username, PASSWORD, OWNER)
  t.equal(token.statusCode, 503, 'the token endpoint fails closed')
  t.same(token.json(), { error: 'temporarily_unavailable', error_description: 'Rate limiting is unavailable; retry shortly' })
  t.equal(token.headers['retry-after'], '1')
  const change = await a.inject(as(access, { method: 'POST', url: '/users/me/password', payload: { current_password: PASSWORD, new_password: 'Another-Password-9921-Fennel' } }))
  t.equal(change.statusCode, 503, 'so does the password change')
  t.equal(change.headers['retry-after'], '1')
})
