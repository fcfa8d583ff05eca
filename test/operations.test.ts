import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { loggerOptions } from '../src/logger.js'
import { build, freePort, login, register, uniqueName } from './helper.js'

const PASSWORD = 'Wombat-Lantern-5521-Orchid'

/** The whole service with its log lines kept in memory. */
async function buildLogged (t: Parameters<typeof build>[0], overrides: Record<string, unknown> = {}): Promise<{ app: FastifyInstance, lines: () => Array<Record<string, unknown>> }> {
  const raw: string[] = []
  const stream = { write (line: string) { raw.push(line) } }
  const app = await build(t, { LOG_LEVEL: 'info', ...overrides }, { logger: { ...loggerOptions({ LOG_LEVEL: 'info' }), stream } })
  return { app, lines: () => raw.map(line => JSON.parse(line)) }
}

async function scrape (app: FastifyInstance): Promise<string> {
  const res = await app.inject({ url: '/metrics' })
  if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}`)
  return res.body
}

/** The value of one sample line of the Prometheus text, or undefined. */
function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + (Object.keys(labels).length > 0 ? '{' : ' ')) && !line.startsWith(name + '{')) continue
    const [series, value] = [line.slice(0, line.lastIndexOf(' ')), line.slice(line.lastIndexOf(' ') + 1)]
    if (!series.startsWith(name)) continue
    if (series.slice(name.length).length > 0 && !series.slice(name.length).startsWith('{')) continue
    if (Object.entries(labels).every(([k, v]) => series.includes(`${k}="${v}"`))) return Number(value)
  }
  return undefined
}

test('X-Request-Id: when a caller sends a sane one, then the answer and the log lines carry it; when not, then a fresh id', async (t) => {
  const { app, lines } = await buildLogged(t)
  const kept = await app.inject({ url: '/health/live', headers: { 'x-request-id': 'trace-abc.123' } })
  t.equal(kept.headers['x-request-id'], 'trace-abc.123')
  t.ok(lines().some(l => l.request_id === 'trace-abc.123'), 'logged as request_id')

  for (const bad of ['has space', 'x'.repeat(200), '"quoted"<tag>', '']) {
    const res = await app.inject({ url: '/health/live', headers: { 'x-request-id': bad } })
    t.match(res.headers['x-request-id'], /^[0-9a-f]{12}-[0-9a-z]+$/, `${JSON.stringify(bad.slice(0, 20))} replaced`)
  }
  const none = await app.inject({ url: '/health/live' })
  const again = await app.inject({ url: '/health/live' })
  t.match(none.headers['x-request-id'], /^[0-9a-f]{12}-[0-9a-z]+$/)
  t.not(none.headers['x-request-id'], again.headers['x-request-id'], 'a new id for each request')
  const problem = await app.inject({ url: '/users/me', headers: { 'x-request-id': 'on-errors-too' } })
  t.equal(problem.statusCode, 401)
  t.equal(problem.headers['x-request-id'], 'on-errors-too')
})

test('GET /metrics: when logins succeed and fail, then Prometheus text counts them, times the hashes and the routes', async (t) => {
  const app = await build(t)
  const user = await register(app, { password: PASSWORD })
  await login(app, user.username, PASSWORD)
  t.equal((await app.inject({ method: 'POST', url: '/auth/token', payload: { username: user.username, password: 'wrong password!' } })).statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url: '/auth/token', payload: { username: uniqueName('nobody'), password: 'wrong password!' } })).statusCode, 401)
  t.equal((await app.inject({ url: '/users/me' })).statusCode, 401)

  const res = await app.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const text = res.body
  t.equal(sample(text, 'auth_logins_total', { outcome: 'success' }), 1)
  t.equal(sample(text, 'auth_logins_total', { outcome: 'wrong_password' }), 1)
  t.equal(sample(text, 'auth_logins_total', { outcome: 'unknown_user' }), 1)
  // register hashes once; each of the three logins verifies once.
  t.equal(sample(text, 'auth_password_hash_duration_seconds_count', { operation: 'hash' }), 1)
  t.equal(sample(text, 'auth_password_hash_duration_seconds_count', { operation: 'verify' }), 3)
  t.equal(sample(text, 'http_request_duration_seconds_count', { method: 'GET', route: '/users/me', status_code: '401' }), 1)
  t.equal(sample(text, 'http_request_duration_seconds_count', { method: 'POST', route: '/auth/token', status_code: '401' }), 2)
  t.ok((sample(text, 'db_pool_max') ?? 0) >= 1, 'the pool size')
  t.ok(sample(text, 'db_pool_connections', { state: 'idle' }) !== undefined, 'pool use by state')
  t.ok(sample(text, 'process_resident_memory_bytes') !== undefined, 'process metrics')
  t.notOk(text.includes(PASSWORD), 'no password in the metrics')
})

test('GET /metrics: when a refresh token is reused and a limit is hit, then both are counted', async (t) => {
  const app = await build(t, { REFRESH_REUSE_GRACE_SECONDS: 0, RATE_LIMIT_ENABLED: true, RATE_LIMIT_TOKEN_MAX: 3 })
  const user = await register(app, { password: PASSWORD })
  const first = (await app.inject({ method: 'POST', url: '/auth/token', payload: { username: user.username, password: PASSWORD } })).json()
  t.equal((await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: first.refresh_token } })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: first.refresh_token } })).statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/auth/token', payload: { username: user.username, password: PASSWORD } })).statusCode, 429, 'the fourth call in the window')
  const text = await scrape(app)
  t.equal(sample(text, 'auth_refresh_token_reuse_total'), 1)
  t.equal(sample(text, 'auth_token_refreshes_total', { outcome: 'success' }), 1)
  t.equal(sample(text, 'auth_token_refreshes_total', { outcome: 'reused' }), 1)
  t.equal(sample(text, 'http_rate_limited_total', { route: '/auth/token' }), 1)
})

test('GET /metrics: when METRICS_PORT is set, then metrics are served there and not on the public port; METRICS_ENABLED=false serves none', async (t) => {
  const app = await build(t, { METRICS_PORT: 0 })
  t.equal((await app.inject({ url: '/metrics' })).statusCode, 404, 'not on the public port')
  const off = await build(t, { METRICS_ENABLED: false })
  t.equal((await off.inject({ url: '/metrics' })).statusCode, 404, 'off')

  const port = await freePort()
  await build(t, { METRICS_PORT: port, HOST: '127.0.0.1' })
  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  t.equal(res.status, 200)
  t.match(await res.text(), /http_request_duration_seconds/)
})

test('audit trail: when users register, log in, fail, refresh, reuse, revoke and log out, then one structured line per security event', async (t) => {
  const { app, lines } = await buildLogged(t, { REFRESH_REUSE_GRACE_SECONDS: 0 })
  const user = await register(app, { password: PASSWORD })
  const token = async (payload: Record<string, string>, requestId: string): Promise<Record<string, string>> =>
    (await app.inject({ method: 'POST', url: '/auth/token', payload, headers: { 'x-request-id': requestId } })).json()
  const first = await token({ username: user.username, password: PASSWORD }, 'audit-login')
  await token({ username: user.username, password: 'not the password' }, 'audit-fail')
  await token({ username: PASSWORD, password: 'not the password' }, 'audit-fail-unknown')
  const second = await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token }, 'audit-refresh')
  await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token }, 'audit-reuse')
  const third = await token({ username: user.username, password: PASSWORD }, 'audit-login-2')
  await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: third.refresh_token } })
  const fourth = await token({ username: user.username, password: PASSWORD }, 'audit-login-3')
  await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${fourth.access_token}` } })
  t.ok(second.access_token, 'the refresh succeeded')

  const events = lines().filter(l => l.audit !== undefined) as Array<{ audit: Record<string, unknown>, request_id: string }>
  const byEvent = (name: string) => events.filter(e => e.audit.event === name)
  t.same(byEvent('user_registered').map(e => e.audit.user_id), [user.id])
  t.same(byEvent('login_succeeded').map(e => e.request_id), ['audit-login', 'audit-login-2', 'audit-login-3'])
  t.same(byEvent('login_failed').map(e => [e.audit.reason, e.audit.user_id]), [['wrong_password', user.id], ['unknown_user', undefined]])
  t.equal(byEvent('token_refreshed').length, 1)
  t.equal(byEvent('refresh_token_reuse').length, 1)
  t.equal(byEvent('refresh_token_reuse')[0].request_id, 'audit-reuse')
  t.equal(byEvent('token_revoked').length, 1)
  t.equal(byEvent('logout').length, 1)
  t.ok(events.every(e => e.audit.ip === '127.0.0.1'), 'each carries the client address')
  t.notOk(lines().some(l => JSON.stringify(l).includes(PASSWORD)), 'no password (nor a password typed as a username) in any line')
})
