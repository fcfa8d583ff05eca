import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, freePort, login, register, uniqueName } from '../helper.js'

const PASSWORD = 'Wombat-Lantern-5521-Orchid'

async function scrape (app: FastifyInstance): Promise<string> {
  const res = await app.metricsServer.inject({ url: '/metrics' })
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

test('GET /metrics: when logins succeed and fail, then Prometheus text counts them, times the hashes and the routes', async (t) => {
  const app = await build(t)
  const user = await register(app, { password: PASSWORD })
  await login(app, user.username, PASSWORD)
  t.equal((await app.inject({ method: 'POST', url: '/auth/token', payload: { username: user.username, password: 'wrong password!' } })).statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url: '/auth/token', payload: { username: uniqueName('nobody'), password: 'wrong password!' } })).statusCode, 401)
  t.equal((await app.inject({ url: '/users/me' })).statusCode, 401)

  t.equal((await app.inject({ url: '/metrics' })).statusCode, 404, 'never on the public port')
  const res = await app.metricsServer.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const text = res.body
  t.equal(sample(text, 'auth_logins_total', { outcome: 'success' }), 1)
  // A wrong password and an unknown user are one outcome: a scrape must not tell which accounts exist.
  t.equal(sample(text, 'auth_logins_total', { outcome: 'invalid_credentials' }), 2)
  t.notOk(/unknown_user|wrong_password/.test(text), 'account existence is not in the metrics')
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
  const app = await build(t, { REFRESH_REUSE_GRACE_SECONDS: 0, RATE_LIMIT_ENABLED: true, RATE_LIMIT_TOKEN_MAX: 1 })
  const user = await register(app, { password: PASSWORD })
  const first = (await app.inject({ method: 'POST', url: '/auth/token', payload: { username: user.username, password: PASSWORD } })).json()
  t.equal((await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: first.refresh_token } })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: first.refresh_token } })).statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/auth/token', payload: { username: user.username, password: PASSWORD } })).statusCode, 429, 'the second password login in the window (refreshes have a budget of their own)')
  const text = await scrape(app)
  t.equal(sample(text, 'auth_refresh_token_reuse_total'), 1)
  t.equal(sample(text, 'auth_token_refreshes_total', { outcome: 'success' }), 1)
  t.equal(sample(text, 'auth_token_refreshes_total', { outcome: 'reused' }), 1)
  t.equal(sample(text, 'http_rate_limited_total', { route: '/auth/token' }), 1)
})

test('GET /metrics: when the service runs, then metrics are served on METRICS_PORT only, never on the public port; METRICS_ENABLED=false serves none', async (t) => {
  const off = await build(t, { METRICS_ENABLED: false })
  t.equal((await off.inject({ url: '/metrics' })).statusCode, 404, 'off')
  t.equal((await off.metricsServer.inject({ url: '/metrics' })).statusCode, 404, 'off there too')

  const port = await freePort()
  await build(t, { METRICS_PORT: port, HOST: '127.0.0.1' })
  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  t.equal(res.status, 200)
  t.match(await res.text(), /http_request_duration_seconds/)
})
