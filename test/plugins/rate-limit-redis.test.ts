import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { bearer, build, login, register, startRedis, twoInstances } from '../helper.js'

const PASSWORD = 'Heron-Pebble-8812-Saffron'

const wrongLogin = async (app: FastifyInstance, username: string): Promise<number> =>
  (await app.inject({ method: 'POST', url: '/auth/token', payload: { username, password: 'not the password' } })).statusCode

test('rate limits with REDIS_URL: when two instances share a Redis, then the token endpoint\'s limit holds across both', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await twoInstances(t, { RATE_LIMIT_ENABLED: true, RATE_LIMIT_TOKEN_MAX: 4, REDIS_URL: redis.url })
  const user = await register(a, { password: PASSWORD })
  const statuses = []
  for (const app of [a, b, a, b, a, b]) statuses.push(await wrongLogin(app, user.username))
  t.same(statuses, [401, 401, 401, 401, 429, 429], 'four attempts in all, whichever instance takes them')

  // The control: without Redis each instance counts alone, and the same six attempts all get through.
  const [c, d] = await twoInstances(t, { RATE_LIMIT_ENABLED: true, RATE_LIMIT_TOKEN_MAX: 4 })
  const other = await register(c, { password: PASSWORD })
  const alone = []
  for (const app of [c, d, c, d, c, d]) alone.push(await wrongLogin(app, other.username))
  t.same(alone, [401, 401, 401, 401, 401, 401], 'per-instance counters let twice the limit through')
})

async function timed<T> (work: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now()
  const result = await work()
  return [result, performance.now() - started]
}

for (const failure of ['stopped (SIGSTOP: connected but silent)', 'killed'] as const) {
  test(`rate limits with REDIS_URL: when Redis is ${failure}, then no request hangs: most routes fail open, token and register fail closed with 503`, async (t) => {
    const redis = await startRedis(t)
    const app = await build(t, { RATE_LIMIT_ENABLED: true, REDIS_URL: redis.url, REDIS_TIMEOUT_MS: 200 })
    const user = await register(app, { password: PASSWORD })
    const access = await login(app, user.username, PASSWORD)

    if (failure === 'killed') await redis.kill()
    else process.kill(redis.pid, 'SIGSTOP')

    // The bound is the behaviour (no request hangs): REDIS_TIMEOUT_MS is 200, the rest is margin for a busy machine.
    const [me, meMs] = await timed(async () => await app.inject({ url: '/users/me', headers: bearer(access) }))
    t.equal(me.statusCode, 200, 'GET /users/me fails open')
    t.ok(meMs < 1500, `and answers in ${Math.round(meMs)} ms`)

    const [token, tokenMs] = await timed(async () => await app.inject({ method: 'POST', url: '/auth/token', payload: { username: user.username, password: PASSWORD } }))
    t.equal(token.statusCode, 503, 'POST /auth/token fails closed')
    t.same(token.json(), { error: 'temporarily_unavailable', error_description: 'Rate limiting is unavailable; retry shortly' })
    t.equal(token.headers['retry-after'], '1')
    t.equal(token.headers['cache-control'], 'no-store')
    t.ok(tokenMs < 1500, `and answers in ${Math.round(tokenMs)} ms`)

    const [registered, registerMs] = await timed(async () => await app.inject({ method: 'POST', url: '/auth/register', payload: { username: 'after_redis', email: 'after@example.com', password: PASSWORD } }))
    t.equal(registered.statusCode, 503, 'POST /auth/register fails closed')
    t.equal(registered.json().code, 'rate_limit_unavailable')
    t.ok(registerMs < 1500, `and answers in ${Math.round(registerMs)} ms`)

    const [live] = await timed(async () => await app.inject({ url: '/health/live' }))
    t.equal(live.statusCode, 200, 'health is never rate limited')
  })
}
