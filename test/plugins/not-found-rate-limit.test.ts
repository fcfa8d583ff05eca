import { test } from 'tap'
import { build } from '../helper.js'

test('not found: when unknown URLs keep coming past the global limit, then they are refused with 429 like any route', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: true, RATE_LIMIT_MAX: 3 })
  const statuses: number[] = []
  for (let i = 0; i < 6; i++) {
    const res = await app.inject({ method: 'GET', url: `/no-such-route-${i}` })
    statuses.push(res.statusCode)
    if (res.statusCode === 404) t.match(res.json(), { status: 404, code: 'not_found', detail: `No route for GET /no-such-route-${i}` })
    if (res.statusCode === 429) {
      t.match(res.json(), { status: 429, code: 'rate_limited' })
      t.match(res.headers['retry-after'], /^\d+$/)
      t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8')
    }
  }
  t.same(statuses, [404, 404, 404, 429, 429, 429])
  const known = await app.inject({ method: 'GET', url: '/users/me' })
  t.equal(known.statusCode, 429, 'one counter per client: the known routes share it')
})

test('not found: when rate limiting is off, then unknown URLs are 404 however many come', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: false, RATE_LIMIT_MAX: 3 })
  for (let i = 0; i < 6; i++) t.equal((await app.inject({ method: 'GET', url: `/no-such-route-${i}` })).statusCode, 404)
})
