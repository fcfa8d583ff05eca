import { randomBytes } from 'node:crypto'
import { test } from 'tap'
import { eq } from 'drizzle-orm'
import { sessions } from '../../src/db/schema.js'
import { REFRESH_REFUSED, assertRefreshRefused, assertSessionEnded, bearer, build, loginPair, me, refresh, register, revoke } from '../helper.js'

test('POST /auth/logout: when the caller logs out, then 204 and the session\'s access and refresh tokens stop working', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const other = await loginPair(app, user)
  const pair = await loginPair(app, user)
  const res = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(pair.access) })
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  assertSessionEnded(t, await me(app, pair.access))
  assertRefreshRefused(t, await refresh(app, pair.refresh))
  const [row] = await app.database.db.select().from(sessions).where(eq(sessions.id, pair.sid))
  t.equal(row?.endReason, 'logout')
  t.equal((await me(app, other.access)).statusCode, 200, 'the user\'s other session is untouched')
})

test('POST /auth/token: when a client retries the refresh of a logged-out session within the grace window, then "invalid", never "concurrent request"', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await loginPair(app, user)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(pair.access) })).statusCode, 204)
  // Nobody won this token: saying a concurrent request did would send the client looking for tokens it never got.
  assertRefreshRefused(t, await refresh(app, pair.refresh), REFRESH_REFUSED, 'first try')
  assertRefreshRefused(t, await refresh(app, pair.refresh), REFRESH_REFUSED, 'retry within the grace window')
})

test('POST /auth/logout: when there is no token, then 401', async (t) => {
  const app = await build(t)
  const res = await app.inject({ method: 'POST', url: '/auth/logout' })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['www-authenticate'], 'Bearer')
})

test('POST /auth/revoke: when a refresh token is revoked, then 200 and its session ends', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await loginPair(app, user)
  const res = await revoke(app, { token: pair.refresh, token_type_hint: 'refresh_token' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  t.same(res.json(), {})
  assertRefreshRefused(t, await refresh(app, pair.refresh))
  assertSessionEnded(t, await me(app, pair.access))
})

test('POST /auth/revoke: when an access token is revoked (JSON), then 200 and its session ends', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await loginPair(app, user)
  const res = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: pair.access, token_type_hint: 'access_token' } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), {})
  assertSessionEnded(t, await me(app, pair.access))
  assertRefreshRefused(t, await refresh(app, pair.refresh))
})

test('POST /auth/revoke: when the token is unknown, then 200 and nothing else ends', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await loginPair(app, user)
  for (const token of [randomBytes(32).toString('base64url'), 'garbage', 'x.y.z']) {
    const res = await revoke(app, { token })
    t.equal(res.statusCode, 200, token)
    t.same(res.json(), {})
  }
  t.equal((await me(app, pair.access)).statusCode, 200, 'the unrelated session still works')
  t.equal((await refresh(app, pair.refresh)).statusCode, 200)
})

test('POST /auth/revoke: when token_type_hint names the other kind, then 200 and the token is still revoked', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const a = await loginPair(app, user)
  const b = await loginPair(app, user)
  t.equal((await revoke(app, { token: a.refresh, token_type_hint: 'access_token' })).statusCode, 200)
  t.equal((await revoke(app, { token: b.access, token_type_hint: 'refresh_token' })).statusCode, 200)
  assertRefreshRefused(t, await refresh(app, a.refresh), REFRESH_REFUSED, 'the refresh token hinted as an access token')
  assertSessionEnded(t, await me(app, a.access), 'its access token')
  assertSessionEnded(t, await me(app, b.access), 'the access token hinted as a refresh token')
  assertRefreshRefused(t, await refresh(app, b.refresh), REFRESH_REFUSED, 'its refresh token')
})

test('POST /auth/revoke: when the token is missing or empty, then 400 invalid_request', async (t) => {
  const app = await build(t)
  const bodies: Array<Record<string, string>> = [{}, { token: '' }, { token_type_hint: 'refresh_token' }]
  for (const fields of bodies) {
    const res = await revoke(app, fields)
    t.equal(res.statusCode, 400, JSON.stringify(fields))
    t.same(res.json(), { error: 'invalid_request', error_description: 'token is required' })
  }
})
