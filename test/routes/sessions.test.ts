import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { test, type Test } from 'tap'
import { eq, inArray, sql } from 'drizzle-orm'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { refreshTokens, sessions, users } from '../../src/db/schema.js'
import { build, register, twoInstances, type Registered } from '../helper.js'

const ENDED_CHALLENGE = 'Bearer error="invalid_token", error_description="Session has ended"'
const INVALID_CHALLENGE = 'Bearer error="invalid_token", error_description="Could not validate credentials"'
const RACED = 'Refresh token was already used by a concurrent request'
const REFUSED = 'Refresh token is invalid, expired or revoked'
const USER_AGENT = 'sessions-test/1.0 (tap)'

type Assert = Pick<Test, 'equal' | 'same' | 'match' | 'ok'>

interface Pair {
  access: string
  refresh: string
  sid: string
}

const formPost = (url: string, fields: Record<string, string>) => ({
  method: 'POST' as const,
  url,
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  payload: new URLSearchParams(fields).toString()
})

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

function claimsOf (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())
}

function pairOf (res: LightMyRequestResponse): Pair {
  const body = res.json()
  return { access: body.access_token, refresh: body.refresh_token, sid: claimsOf(body.access_token).sid as string }
}

/** A password login that keeps the refresh token too (the helper's login returns the access token only). */
async function logIn (app: FastifyInstance, user: Registered, userAgent = USER_AGENT): Promise<Pair> {
  const res = await app.inject({
    ...formPost('/auth/token', { grant_type: 'password', username: user.username, password: user.password }),
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': userAgent }
  })
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  return pairOf(res)
}

const refresh = async (app: FastifyInstance, refreshToken: string): Promise<LightMyRequestResponse> =>
  await app.inject(formPost('/auth/token', { grant_type: 'refresh_token', refresh_token: refreshToken }))

const me = async (app: FastifyInstance, access: string): Promise<LightMyRequestResponse> =>
  await app.inject({ method: 'GET', url: '/users/me', headers: bearer(access) })

const revoke = async (app: FastifyInstance, fields: Record<string, string>): Promise<LightMyRequestResponse> =>
  await app.inject(formPost('/auth/revoke', fields))

function assertRefreshRefused (t: Assert, res: LightMyRequestResponse, description = REFUSED, what = 'refresh'): void {
  t.equal(res.statusCode, 400, `${what}: 400 (got ${res.statusCode} ${res.body.slice(0, 200)})`)
  t.equal(res.headers['cache-control'], 'no-store', `${what}: no-store`)
  t.same(res.json(), { error: 'invalid_grant', error_description: description }, `${what}: invalid_grant`)
}

function assertUnauthorized (t: Assert, res: LightMyRequestResponse, challenge: string, detail: string, what = 'access token'): void {
  t.equal(res.statusCode, 401, `${what}: 401 (got ${res.statusCode} ${res.body.slice(0, 200)})`)
  t.equal(res.headers['www-authenticate'], challenge, `${what}: challenge`)
  t.match(res.headers['content-type'], /^application\/problem\+json/, `${what}: problem document`)
  t.same(res.json(), { type: 'about:blank', title: 'Unauthorized', status: 401, detail, code: 'invalid_token' }, `${what}: body`)
}

const assertSessionEnded = (t: Assert, res: LightMyRequestResponse, what?: string): void =>
  assertUnauthorized(t, res, ENDED_CHALLENGE, 'Session has ended', what)

/** Asks every `everyMs` until `check` holds or `limitMs` has passed; the milliseconds it took, or undefined. */
async function timeUntil (check: () => Promise<boolean>, limitMs: number, everyMs = 20): Promise<number | undefined> {
  const started = performance.now()
  for (;;) {
    if (await check()) return performance.now() - started
    if (performance.now() - started >= limitMs) return undefined
    await sleep(everyMs)
  }
}

test('POST /auth/token: when the password grant succeeds, then a refresh token and an access token carrying the session id', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await logIn(app, user)
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
  const first = await logIn(app, user)

  const viaForm = await refresh(app, first.refresh)
  t.equal(viaForm.statusCode, 200, `form refresh: ${viaForm.body.slice(0, 200)}`)
  t.equal(viaForm.headers['cache-control'], 'no-store')
  const body = viaForm.json()
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type'])
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
  const first = await logIn(app, user)
  const second = pairOf(await refresh(app, first.refresh))

  assertRefreshRefused(t, await refresh(app, first.refresh), RACED, 'the retired token')
  const [row] = await app.database.db.select().from(sessions).where(eq(sessions.id, first.sid))
  t.equal(row?.endedAt, null, 'the session is not ended in the database')
  t.equal((await me(app, second.access)).statusCode, 200, 'the access token is still accepted')
  t.equal((await me(app, first.access)).statusCode, 200, 'and so is the one from the login')
  const third = await refresh(app, second.refresh)
  t.equal(third.statusCode, 200, 'the newest refresh token still works')
  t.equal(pairOf(third).sid, first.sid)
})

test('POST /auth/token: when a retired refresh token comes back after the grace window, then the whole session ends', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const first = await logIn(app, user)
  const second = pairOf(await refresh(app, first.refresh))
  // Default grace (5 s): move the retirement back instead of waiting.
  const moved = await app.database.db.update(refreshTokens)
    .set({ rotatedAt: sql`now() - interval '60 seconds'` })
    .where(eq(refreshTokens.sessionId, first.sid)).returning({ id: refreshTokens.id })
  t.equal(moved.length, 2, 'both refresh tokens of the session were moved back')

  assertRefreshRefused(t, await refresh(app, first.refresh), REFUSED, 'the reused token')
  assertSessionEnded(t, await me(app, second.access))
  const [row] = await app.database.db.select().from(sessions).where(eq(sessions.id, first.sid))
  t.equal(row?.endReason, 'refresh_token_reuse')
})

test('POST /auth/token: when REFRESH_REUSE_GRACE_SECONDS=0 and a retired refresh token comes back, then the session ends with its tokens', async (t) => {
  const app = await build(t, { REFRESH_REUSE_GRACE_SECONDS: 0 })
  const user = await register(app)
  const other = await logIn(app, user)
  const first = await logIn(app, user)
  const second = pairOf(await refresh(app, first.refresh))
  t.equal((await me(app, second.access)).statusCode, 200, 'the access token works before the reuse')

  assertRefreshRefused(t, await refresh(app, first.refresh), REFUSED, 'the reused token')
  assertRefreshRefused(t, await refresh(app, second.refresh), REFUSED, 'the newest refresh token')
  assertSessionEnded(t, await me(app, second.access), 'the newest access token')
  assertSessionEnded(t, await me(app, first.access), 'the login\'s access token')
  t.equal((await me(app, other.access)).statusCode, 200, 'the user\'s other session is untouched')
  t.equal((await refresh(app, other.refresh)).statusCode, 200, 'and its refresh token works')
})

test('POST /auth/token: when 20 refreshes of one refresh token race, then exactly one wins and only its refresh token works', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await logIn(app, user)
  const results = await Promise.all(Array.from({ length: 20 }, async () => await refresh(app, pair.refresh)))

  const winners = results.filter(r => r.statusCode === 200)
  const losers = results.filter(r => r.statusCode === 400)
  t.equal(winners.length, 1, `one 200 (codes: ${results.map(r => r.statusCode).join(',')})`)
  t.equal(losers.length, 19, 'nineteen 400')
  for (const loser of losers) t.same(loser.json(), { error: 'invalid_grant', error_description: RACED })

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
  const pair = await logIn(app, user)
  assertRefreshRefused(t, await refresh(app, pair.access), REFUSED, 'access token as refresh token')
  t.equal((await refresh(app, pair.refresh)).statusCode, 200, 'the real refresh token still works')
})

test('GET /users/me: when a refresh token is sent as the bearer token, then 401 invalid_token', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await logIn(app, user)
  assertUnauthorized(t, await me(app, pair.refresh), INVALID_CHALLENGE, 'Could not validate credentials', 'refresh token as bearer')
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
  assertRefreshRefused(t, await refresh(app, randomBytes(32).toString('base64url')), REFUSED, 'a well-formed unknown token')
  assertRefreshRefused(t, await refresh(app, 'not-a-refresh-token'), REFUSED, 'a malformed token')
})

test('POST /auth/token: when the session has gone SESSION_IDLE_TTL without a refresh, then its refresh token gets 400 invalid_grant', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const idle = await logIn(app, user)
  const fresh = await logIn(app, user)
  const next = pairOf(await refresh(app, idle.refresh))
  t.equal(next.sid, idle.sid, 'the refresh works before the session idles')

  const updated = await app.database.db.update(sessions)
    .set({ lastUsedAt: new Date(Date.now() - (app.config.SESSION_IDLE_TTL + 60) * 1000) })
    .where(eq(sessions.id, idle.sid)).returning({ id: sessions.id })
  t.equal(updated.length, 1)
  assertRefreshRefused(t, await refresh(app, next.refresh), REFUSED, 'the idle session\'s token')
  const list = await app.inject({ method: 'GET', url: '/users/me/sessions', headers: bearer(fresh.access) })
  t.same(list.json().map((s: { id: string }) => s.id), [fresh.sid], 'the idle session is not listed')
  t.equal((await refresh(app, fresh.refresh)).statusCode, 200, 'the other session is untouched')
})

test('POST /auth/token: when the session is past SESSION_ABSOLUTE_TTL, then its refresh token gets 400 invalid_grant', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const old = await logIn(app, user)
  const fresh = await logIn(app, user)
  const next = pairOf(await refresh(app, old.refresh))
  t.equal(next.sid, old.sid, 'the refresh works before the session expires')

  const updated = await app.database.db.update(sessions)
    .set({ expiresAt: new Date(Date.now() - 1000) })
    .where(eq(sessions.id, old.sid)).returning({ id: sessions.id })
  t.equal(updated.length, 1)
  assertRefreshRefused(t, await refresh(app, next.refresh), REFUSED, 'the expired session\'s token')
  const list = await app.inject({ method: 'GET', url: '/users/me/sessions', headers: bearer(fresh.access) })
  t.same(list.json().map((s: { id: string }) => s.id), [fresh.sid], 'the expired session is not listed')
  t.equal((await refresh(app, fresh.refresh)).statusCode, 200, 'the other session is untouched')
})

test('POST /auth/logout: when the caller logs out, then 204 and the session\'s access and refresh tokens stop working', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const other = await logIn(app, user)
  const pair = await logIn(app, user)
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
  const pair = await logIn(app, user)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(pair.access) })).statusCode, 204)
  // Nobody won this token: saying a concurrent request did would send the client looking for tokens it never got.
  assertRefreshRefused(t, await refresh(app, pair.refresh), REFUSED, 'first try')
  assertRefreshRefused(t, await refresh(app, pair.refresh), REFUSED, 'retry within the grace window')
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
  const pair = await logIn(app, user)
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
  const pair = await logIn(app, user)
  const res = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: pair.access, token_type_hint: 'access_token' } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), {})
  assertSessionEnded(t, await me(app, pair.access))
  assertRefreshRefused(t, await refresh(app, pair.refresh))
})

test('POST /auth/revoke: when the token is unknown, then 200 and nothing else ends', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await logIn(app, user)
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
  const a = await logIn(app, user)
  const b = await logIn(app, user)
  t.equal((await revoke(app, { token: a.refresh, token_type_hint: 'access_token' })).statusCode, 200)
  t.equal((await revoke(app, { token: b.access, token_type_hint: 'refresh_token' })).statusCode, 200)
  assertRefreshRefused(t, await refresh(app, a.refresh), REFUSED, 'the refresh token hinted as an access token')
  assertSessionEnded(t, await me(app, a.access), 'its access token')
  assertSessionEnded(t, await me(app, b.access), 'the access token hinted as a refresh token')
  assertRefreshRefused(t, await refresh(app, b.refresh), REFUSED, 'its refresh token')
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

test('GET /users/me/sessions: when a user has sessions, then only theirs are listed, the caller\'s marked current, with the user agent', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const stranger = await register(app)
  const phone = await logIn(app, user, 'phone-app/2.0')
  const laptop = await logIn(app, user, 'laptop-browser/1.0')
  const strangers = await logIn(app, stranger)

  const res = await app.inject({ method: 'GET', url: '/users/me/sessions', headers: bearer(laptop.access) })
  t.equal(res.statusCode, 200)
  const list: Array<Record<string, unknown>> = res.json()
  t.same(list.map(s => s.id).sort(), [phone.sid, laptop.sid].sort(), 'both of the user\'s sessions and no one else\'s')
  t.notOk(list.some(s => s.id === strangers.sid))
  for (const s of list) {
    t.same(Object.keys(s).sort(), ['created_at', 'current', 'expires_at', 'id', 'ip_address', 'last_used_at', 'user_agent'])
    t.ok(!Number.isNaN(Date.parse(s.expires_at as string)) && Date.parse(s.expires_at as string) > Date.now(), 'expires in the future')
  }
  const byId = new Map(list.map(s => [s.id, s]))
  t.equal(byId.get(laptop.sid)?.current, true)
  t.equal(byId.get(phone.sid)?.current, false)
  t.equal(byId.get(laptop.sid)?.user_agent, 'laptop-browser/1.0')
  t.equal(byId.get(phone.sid)?.user_agent, 'phone-app/2.0')
  t.equal(byId.get(laptop.sid)?.ip_address, '127.0.0.1')

  const fromPhone = (await app.inject({ method: 'GET', url: '/users/me/sessions', headers: bearer(phone.access) })).json()
  t.same(fromPhone.filter((s: { current: boolean }) => s.current).map((s: { id: string }) => s.id), [phone.sid], 'current follows the caller')
})

test('DELETE /users/me/sessions/:id: when the user ends another of their sessions, then 204 and only that session ends', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const keep = await logIn(app, user)
  const end = await logIn(app, user)
  const res = await app.inject({ method: 'DELETE', url: `/users/me/sessions/${end.sid}`, headers: bearer(keep.access) })
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  assertSessionEnded(t, await me(app, end.access))
  assertRefreshRefused(t, await refresh(app, end.refresh))
  t.equal((await me(app, keep.access)).statusCode, 200, 'the caller\'s session is untouched')
  const list = await app.inject({ method: 'GET', url: '/users/me/sessions', headers: bearer(keep.access) })
  t.same(list.json().map((s: { id: string }) => s.id), [keep.sid])

  const again = await app.inject({ method: 'DELETE', url: `/users/me/sessions/${end.sid}`, headers: bearer(keep.access) })
  t.equal(again.statusCode, 404, 'an ended session is no longer there to end')
})

test('DELETE /users/me/sessions/:id: when the id is unknown or another user\'s, then the same 404 and nothing ends', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const stranger = await register(app)
  const mine = await logIn(app, user)
  const theirs = await logIn(app, stranger)
  const unknown = await app.inject({ method: 'DELETE', url: `/users/me/sessions/${randomUUID()}`, headers: bearer(mine.access) })
  const foreign = await app.inject({ method: 'DELETE', url: `/users/me/sessions/${theirs.sid}`, headers: bearer(mine.access) })
  for (const res of [unknown, foreign]) {
    t.equal(res.statusCode, 404)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.same(res.json(), { type: 'about:blank', title: 'Not Found', status: 404, detail: 'No active session with that id', code: 'not_found' })
  }
  t.equal(unknown.body, foreign.body, 'byte-identical answers')
  t.equal((await me(app, theirs.access)).statusCode, 200, 'the other user\'s session still works')
  t.equal((await refresh(app, theirs.refresh)).statusCode, 200)
})

test('DELETE /users/me/sessions/:id: when the id is not a UUID, then 400', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await logIn(app, user)
  const res = await app.inject({ method: 'DELETE', url: '/users/me/sessions/not-a-uuid', headers: bearer(pair.access) })
  t.equal(res.statusCode, 400)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.equal(res.json().code, 'validation_error')
  t.match(res.json().detail, /id/)
  t.equal((await me(app, pair.access)).statusCode, 200)
})

test('DELETE /users/me/sessions: when the user ends all sessions, then 204 and every one of theirs ends, the caller\'s included', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const stranger = await register(app)
  const pairs = [await logIn(app, user), await logIn(app, user), await logIn(app, user)]
  const theirs = await logIn(app, stranger)
  const res = await app.inject({ method: 'DELETE', url: '/users/me/sessions', headers: bearer(pairs[0].access) })
  t.equal(res.statusCode, 204)
  for (const [i, pair] of pairs.entries()) {
    assertSessionEnded(t, await me(app, pair.access), `access token ${i}`)
    assertRefreshRefused(t, await refresh(app, pair.refresh), REFUSED, `refresh token ${i}`)
  }
  const rows = await app.database.db.select().from(sessions).where(eq(sessions.userId, user.id))
  t.equal(rows.length, 3)
  t.ok(rows.every(r => r.endedAt !== null && r.endReason === 'ended_all_by_user'), 'every session row is ended')
  t.equal((await me(app, theirs.access)).statusCode, 200, 'another user\'s session is untouched')
})

test('sessions across instances: when a session ends on instance A, then instance B refuses its access token within a second', async (t) => {
  const [a, b] = await twoInstances(t)
  const user = await register(a)
  const pair = await logIn(a, user)
  t.equal((await me(b, pair.access)).statusCode, 200, 'B accepts A\'s access token')

  t.equal((await a.inject({ method: 'POST', url: '/auth/logout', headers: bearer(pair.access) })).statusCode, 204)
  const elapsed = await timeUntil(async () => (await me(b, pair.access)).statusCode === 401, 1000)
  t.ok(elapsed !== undefined, `B refuses the token within 1000 ms (took ${elapsed?.toFixed(0) ?? 'longer'} ms)`)
  assertSessionEnded(t, await me(b, pair.access), 'on B')
  assertRefreshRefused(t, await refresh(b, pair.refresh), REFUSED, 'refresh on B')
})

test('sessions across instances: when B re-reads only once a minute, then the notification alone makes B refuse the token within a second', async (t) => {
  const [a, b] = await twoInstances(t, {}, { SESSION_SYNC_INTERVAL_MS: 60000 })
  const user = await register(a)
  const pair = await logIn(a, user)
  t.equal((await me(b, pair.access)).statusCode, 200, 'B accepts A\'s access token')

  t.equal((await a.inject({ method: 'DELETE', url: '/users/me/sessions', headers: bearer(pair.access) })).statusCode, 204)
  const elapsed = await timeUntil(async () => (await me(b, pair.access)).statusCode === 401, 1000)
  t.ok(elapsed !== undefined, `B refuses the token within 1000 ms, before any re-read (took ${elapsed?.toFixed(0) ?? 'longer'} ms)`)
  assertSessionEnded(t, await me(b, pair.access), 'on B')
})

test('sessions across instances: when a session ends without a notification, then B\'s re-read refuses its token within SESSION_SYNC_INTERVAL_MS', async (t) => {
  const [a, b] = await twoInstances(t, {}, { SESSION_SYNC_INTERVAL_MS: 200 })
  const user = await register(a)
  const pair = await logIn(a, user)
  t.equal((await me(b, pair.access)).statusCode, 200, 'B accepts the token before the session ends')

  // Straight to the database: no NOTIFY, as when a LISTEN connection was down.
  const updated = await a.database.db.update(sessions)
    .set({ endedAt: sql`now()`, endReason: 'test' })
    .where(eq(sessions.id, pair.sid)).returning({ id: sessions.id })
  t.equal(updated.length, 1)
  const elapsed = await timeUntil(async () => (await me(b, pair.access)).statusCode === 401, 1500)
  t.ok(elapsed !== undefined && elapsed <= 200 + 500, `B refuses the token within 200 ms + 500 ms margin (took ${elapsed?.toFixed(0) ?? 'over 1500'} ms)`)
  assertSessionEnded(t, await me(b, pair.access), 'on B')
})

test('DELETE FROM users: when a user is deleted, then their sessions and refresh tokens go with them', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const stranger = await register(app)
  const pairs = [await logIn(app, user), await logIn(app, user)]
  const theirs = await logIn(app, stranger)
  const sids = pairs.map(p => p.sid)
  t.equal((await app.database.db.select().from(refreshTokens).where(inArray(refreshTokens.sessionId, sids))).length, 2, 'refresh tokens exist before')

  const deleted = await app.database.db.delete(users).where(eq(users.id, user.id)).returning({ id: users.id })
  t.equal(deleted.length, 1)
  t.same(await app.database.db.select().from(sessions).where(eq(sessions.userId, user.id)), [], 'no sessions left')
  t.same(await app.database.db.select().from(refreshTokens).where(inArray(refreshTokens.sessionId, sids)), [], 'no refresh tokens left')
  for (const pair of pairs) assertRefreshRefused(t, await refresh(app, pair.refresh))
  assertUnauthorized(t, await me(app, pairs[0].access), INVALID_CHALLENGE, 'Could not validate credentials', 'the deleted user\'s access token')
  t.equal((await refresh(app, theirs.refresh)).statusCode, 200, 'another user\'s session is untouched')
})
