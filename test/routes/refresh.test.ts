import { createHash, randomBytes } from 'node:crypto'
import { test } from 'tap'
import { eq, sql } from 'drizzle-orm'
import { refreshTokens, sessions } from '../../src/db/schema.js'
import { REFRESH_RACED, REFRESH_REFUSED, assertInvalidToken, assertRefreshRefused, assertSessionEnded, bearer, build, claimsOf, formPost, loginPair, me, pairOf, refresh, register } from '../helper.js'

test('POST /auth/token: when the password grant succeeds, then a refresh token and an access token carrying the session id', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await loginPair(app, user)
  t.match(pair.refresh, /^[A-Za-z0-9_-]{43}$/)
  t.match(pair.sid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
  const [row] = await app.database.db.select().from(sessions).where(eq(sessions.id, pair.sid))
  t.equal(row?.userId, user.id, 'the sid names a session of this user in the database')
  t.equal(row?.endedAt, null)
  const [stored] = await app.database.db.select().from(refreshTokens).where(eq(refreshTokens.sessionId, pair.sid))
  t.equal(stored?.tokenHash, createHash('sha256').update(pair.refresh).digest('base64url'), 'only its SHA-256 is stored')
  t.equal((await me(app, pair.access)).statusCode, 200)
})

test('POST /auth/token: when a refresh token is presented (form or JSON), then new tokens for the same session, no-store', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const first = await loginPair(app, user)

  const viaForm = await refresh(app, first.refresh)
  t.equal(viaForm.statusCode, 200, `form refresh: ${viaForm.body.slice(0, 200)}`)
  t.equal(viaForm.headers['cache-control'], 'no-store')
  const body = viaForm.json()
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type'])
  t.equal(body.token_type, 'bearer')
  t.equal(body.expires_in, 900)
  const second = pairOf(viaForm)
  t.equal(second.sid, first.sid, 'same session')
  t.not(second.refresh, first.refresh, 'a new refresh token')
  t.match(second.refresh, /^[A-Za-z0-9_-]{43}$/)
  t.not(second.access, first.access, 'a new access token')
  t.not(claimsOf(second.access).jti, claimsOf(first.access).jti)
  t.equal(claimsOf(second.access).sub, user.id)
  t.equal(claimsOf(second.access).preferred_username, user.username)

  const viaJson = await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: second.refresh } })
  t.equal(viaJson.statusCode, 200, `JSON refresh: ${viaJson.body.slice(0, 200)}`)
  t.equal(viaJson.headers['cache-control'], 'no-store')
  const third = pairOf(viaJson)
  t.equal(third.sid, first.sid, 'same session again')
  t.not(third.refresh, second.refresh)
  t.not(third.refresh, first.refresh)

  for (const access of [first.access, second.access, third.access]) t.equal((await me(app, access)).statusCode, 200, 'every access token of the live session works')
})

test('POST /auth/token: when a retired refresh token comes back within the grace window, then 400 "concurrent request" and the session lives on', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const first = await loginPair(app, user)
  const second = pairOf(await refresh(app, first.refresh))

  assertRefreshRefused(t, await refresh(app, first.refresh), REFRESH_RACED, 'the retired token')
  const [row] = await app.database.db.select().from(sessions).where(eq(sessions.id, first.sid))
  t.equal(row?.endedAt, null, 'the session is not ended in the database')
  t.equal((await me(app, second.access)).statusCode, 200, 'the access token is still accepted')
  t.equal((await me(app, first.access)).statusCode, 200, 'and so is the one from the login')
  const third = await refresh(app, second.refresh)
  t.equal(third.statusCode, 200, 'the newest refresh token still works')
  t.equal(pairOf(third).sid, first.sid)
})

test('POST /auth/token: when a retired refresh token comes back within the grace window from another client (a thief who refreshed first, or the owner after one), then the session ends as reuse', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const first = await loginPair(app, user)
  const fromThief = { 'user-agent': 'thief/1.0' }
  // The thief refreshes first, from another client; the owner's refresh with the same token comes inside the window.
  const stolen = await app.inject(formPost('/auth/token', { grant_type: 'refresh_token', refresh_token: first.refresh }, fromThief))
  t.equal(stolen.statusCode, 200)
  assertRefreshRefused(t, await refresh(app, first.refresh), REFRESH_REFUSED, 'the owner\'s refresh from another client')
  assertSessionEnded(t, await me(app, pairOf(stolen).access), 'the thief\'s access token')
  assertRefreshRefused(t, await refresh(app, pairOf(stolen).refresh), REFRESH_REFUSED, 'the thief\'s refresh token')
  const [row] = await app.database.db.select().from(sessions).where(eq(sessions.id, first.sid))
  t.equal(row?.endReason, 'refresh_token_reuse')
})

test('POST /auth/token: when a retired refresh token comes back after the grace window, then the whole session ends', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const first = await loginPair(app, user)
  const second = pairOf(await refresh(app, first.refresh))
  // Default grace (5 s): move the retirement back instead of waiting.
  const moved = await app.database.db.update(refreshTokens)
    .set({ rotatedAt: sql`now() - interval '60 seconds'` })
    .where(eq(refreshTokens.sessionId, first.sid)).returning({ id: refreshTokens.id })
  t.equal(moved.length, 2, 'both refresh tokens of the session were moved back')

  assertRefreshRefused(t, await refresh(app, first.refresh), REFRESH_REFUSED, 'the reused token')
  assertSessionEnded(t, await me(app, second.access))
  const [row] = await app.database.db.select().from(sessions).where(eq(sessions.id, first.sid))
  t.equal(row?.endReason, 'refresh_token_reuse')
})

test('POST /auth/token: when REFRESH_REUSE_GRACE_SECONDS=0 and a retired refresh token comes back, then the session ends with its tokens', async (t) => {
  const app = await build(t, { REFRESH_REUSE_GRACE_SECONDS: 0 })
  const user = await register(app)
  const other = await loginPair(app, user)
  const first = await loginPair(app, user)
  const second = pairOf(await refresh(app, first.refresh))
  t.equal((await me(app, second.access)).statusCode, 200, 'the access token works before the reuse')

  assertRefreshRefused(t, await refresh(app, first.refresh), REFRESH_REFUSED, 'the reused token')
  assertRefreshRefused(t, await refresh(app, second.refresh), REFRESH_REFUSED, 'the newest refresh token')
  assertSessionEnded(t, await me(app, second.access), 'the newest access token')
  assertSessionEnded(t, await me(app, first.access), 'the login\'s access token')
  t.equal((await me(app, other.access)).statusCode, 200, 'the user\'s other session is untouched')
  t.equal((await refresh(app, other.refresh)).statusCode, 200, 'and its refresh token works')
})

test('POST /auth/token: when 20 refreshes of one refresh token race, then exactly one wins and only its refresh token works', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await loginPair(app, user)
  const results = await Promise.all(Array.from({ length: 20 }, async () => await refresh(app, pair.refresh)))

  const winners = results.filter(r => r.statusCode === 200)
  const losers = results.filter(r => r.statusCode === 400)
  t.equal(winners.length, 1, `one 200 (codes: ${results.map(r => r.statusCode).join(',')})`)
  t.equal(losers.length, 19, 'nineteen 400')
  for (const loser of losers) t.same(loser.json(), { error: 'invalid_grant', error_description: REFRESH_RACED })

  const issued = results.flatMap(r => r.statusCode === 200 ? [pairOf(r).refresh] : [])
  const works = await Promise.all([...issued, pair.refresh].map(async token => (await refresh(app, token)).statusCode))
  t.same(works.filter(code => code === 200).length, 1, `exactly one refresh token works afterwards (codes: ${works.join(',')})`)
  t.equal(works[0], 200, 'the winner\'s')
  t.equal((await me(app, pairOf(winners[0]).access)).statusCode, 200, 'the race did not end the session')
  const live = await app.database.db.select().from(refreshTokens).where(eq(refreshTokens.sessionId, pair.sid))
  t.equal(live.filter(r => r.rotatedAt === null).length, 1, 'one unretired refresh token in the database')
})

test('POST /auth/token: when an access token is sent as refresh_token, then 400 invalid_grant', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await loginPair(app, user)
  assertRefreshRefused(t, await refresh(app, pair.access), REFRESH_REFUSED, 'access token as refresh token')
  t.equal((await refresh(app, pair.refresh)).statusCode, 200, 'the real refresh token still works')
})

test('GET /users/me: when a refresh token is sent as the bearer token, then 401 invalid_token', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await loginPair(app, user)
  assertInvalidToken(t, await me(app, pair.refresh), 'refresh token as bearer')
  t.equal((await me(app, pair.access)).statusCode, 200, 'the access token works')
})

test('POST /auth/token: when grant_type=refresh_token comes without a refresh token, then 400 invalid_request', async (t) => {
  const app = await build(t)
  const bodies: Array<Record<string, string>> = [{ grant_type: 'refresh_token' }, { grant_type: 'refresh_token', refresh_token: '' }]
  for (const fields of bodies) {
    const res = await app.inject(formPost('/auth/token', fields))
    t.equal(res.statusCode, 400)
    t.equal(res.headers['cache-control'], 'no-store')
    t.same(res.json(), { error: 'invalid_request', error_description: 'refresh_token is required' })
  }
})

test('POST /auth/token: when a refresh token is unknown, then 400 invalid_grant', async (t) => {
  const app = await build(t)
  assertRefreshRefused(t, await refresh(app, randomBytes(32).toString('base64url')), REFRESH_REFUSED, 'a well-formed unknown token')
  assertRefreshRefused(t, await refresh(app, 'not-a-refresh-token'), REFRESH_REFUSED, 'a malformed token')
})

test('POST /auth/token: when the session has gone SESSION_IDLE_TTL without a refresh, then its refresh token gets 400 invalid_grant', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const idle = await loginPair(app, user)
  const fresh = await loginPair(app, user)
  const next = pairOf(await refresh(app, idle.refresh))
  t.equal(next.sid, idle.sid, 'the refresh works before the session idles')

  const updated = await app.database.db.update(sessions)
    .set({ lastUsedAt: new Date(Date.now() - (app.config.SESSION_IDLE_TTL + 60) * 1000) })
    .where(eq(sessions.id, idle.sid)).returning({ id: sessions.id })
  t.equal(updated.length, 1)
  assertRefreshRefused(t, await refresh(app, next.refresh), REFRESH_REFUSED, 'the idle session\'s token')
  const list = await app.inject({ method: 'GET', url: '/users/me/sessions', headers: bearer(fresh.access) })
  t.same(list.json().map((s: { id: string }) => s.id), [fresh.sid], 'the idle session is not listed')
  t.equal((await refresh(app, fresh.refresh)).statusCode, 200, 'the other session is untouched')
})

test('POST /auth/token: when the session is past SESSION_ABSOLUTE_TTL, then its refresh token gets 400 invalid_grant', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const old = await loginPair(app, user)
  const fresh = await loginPair(app, user)
  const next = pairOf(await refresh(app, old.refresh))
  t.equal(next.sid, old.sid, 'the refresh works before the session expires')

  const updated = await app.database.db.update(sessions)
    .set({ expiresAt: new Date(Date.now() - 1000) })
    .where(eq(sessions.id, old.sid)).returning({ id: sessions.id })
  t.equal(updated.length, 1)
  assertRefreshRefused(t, await refresh(app, next.refresh), REFRESH_REFUSED, 'the expired session\'s token')
  const list = await app.inject({ method: 'GET', url: '/users/me/sessions', headers: bearer(fresh.access) })
  t.same(list.json().map((s: { id: string }) => s.id), [fresh.sid], 'the expired session is not listed')
  t.equal((await refresh(app, fresh.refresh)).statusCode, 200, 'the other session is untouched')
})
