import { test, type Test } from 'tap'
import { eq } from 'drizzle-orm'
import type { LightMyRequestResponse } from 'fastify'
import { users } from '../../src/db/schema.js'
import { build, forgeToken, login, register, TEST_SECRET, testConfig, twoInstances, validClaims, VALID_HEADER } from '../helper.js'

const INVALID_CHALLENGE = 'Bearer error="invalid_token", error_description="Could not validate credentials"'
const EXPIRED_CHALLENGE = 'Bearer error="invalid_token", error_description="Token has expired"'

const me = (authorization?: string) => ({
  method: 'GET' as const,
  url: '/users/me',
  headers: authorization === undefined ? {} : { authorization }
})

const b64url = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

function decodePart (token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index], 'base64url').toString())
}

/** The same token with its payload replaced: the header and signature are kept as they were. */
function withPayload (token: string, change: (claims: Record<string, unknown>) => Record<string, unknown>): string {
  const [header, , signature] = token.split('.')
  return `${header}.${b64url(change(decodePart(token, 1)))}.${signature}`
}

/** Valid claims for the user with some replaced, and those given as undefined removed. */
function claims (userId: string, changes: Record<string, unknown> = {}): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...validClaims(userId), ...changes }
  for (const key of Object.keys(changes)) if (changes[key] === undefined) delete merged[key]
  return merged
}

type Assert = Pick<Test, 'equal' | 'same' | 'match'>

function assertProblem (t: Assert, res: LightMyRequestResponse, challenge: string, detail: string, code: string): void {
  t.equal(res.statusCode, 401, `401 (got ${res.statusCode} ${res.body.slice(0, 200)})`)
  t.equal(res.headers['www-authenticate'], challenge)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.same(res.json(), { type: 'about:blank', title: 'Unauthorized', status: 401, detail, code })
}

const assertInvalidToken = (t: Assert, res: LightMyRequestResponse): void =>
  assertProblem(t, res, INVALID_CHALLENGE, 'Could not validate credentials', 'invalid_token')

const assertNotAuthenticated = (t: Assert, res: LightMyRequestResponse): void =>
  assertProblem(t, res, 'Bearer', 'Not authenticated', 'not_authenticated')

test('GET /users/me: when the token from a login is valid, then 200 with the user and no password hash', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  const res = await app.inject(me(`Bearer ${token}`))
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['created_at', 'email', 'id', 'username'])
  t.equal(body.id, user.id)
  t.equal(body.username, user.username)
  t.equal(body.email, user.email)
  t.ok(!Number.isNaN(Date.parse(body.created_at)), 'created_at is a date')
  t.notOk('password_hash' in body, 'no password_hash')
  t.notOk('passwordHash' in body, 'no passwordHash')
  t.notMatch(res.body, /argon2|password/i)
})

test('GET /users/me: when the scheme is written in lower or upper case, then the token is still accepted (RFC 7235)', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  for (const scheme of ['bearer', 'BEARER']) {
    const res = await app.inject(me(`${scheme} ${token}`))
    t.equal(res.statusCode, 200, `${scheme}: ${res.statusCode} ${res.body.slice(0, 200)}`)
    t.equal(res.json().id, user.id)
  }
})

test('GET /users/me: when a header ends like one already accepted but differs before that, then it is judged on its own', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  t.equal((await app.inject(me(`Bearer ${token}`))).statusCode, 200, 'accepted, and so remembered')
  // Same signature, so the same last characters: the remembered answer must not be reused for any of these.
  assertInvalidToken(t, await app.inject(me(`Bearer ${withPayload(token, (c) => ({ ...c, sub: '00000000-0000-4000-8000-000000000000' }))}`)))
  assertNotAuthenticated(t, await app.inject(me(`Token ${token}`)))
  assertNotAuthenticated(t, await app.inject(me(`XBearer ${token}`)))
  assertNotAuthenticated(t, await app.inject(me(token)))
  const spaced = await app.inject(me(`Bearer   ${token}`))
  t.equal(spaced.statusCode, 200, 'the same token with more spaces is still valid')
  t.equal((await app.inject(me(`Bearer ${token}`))).statusCode, 200, 'and the first form still is')
})

test('GET /users/me: when there is no Authorization header, then 401 not_authenticated with a bare Bearer challenge', async (t) => {
  const app = await build(t)
  assertNotAuthenticated(t, await app.inject(me()))
})

test('GET /users/me: when the Authorization scheme is not Bearer, then 401 not_authenticated with a bare Bearer challenge', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  for (const header of ['Basic abc', `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`, `Token ${token}`, token]) {
    await t.test(`when the header is "${header.slice(0, 20)}...", then 401 not_authenticated`, async (t) => {
      assertNotAuthenticated(t, await app.inject(me(header)))
    })
  }
})

test('GET /users/me: when the token has expired, then 401 invalid_token "Token has expired"', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const now = Math.floor(Date.now() / 1000)
  const token = forgeToken(VALID_HEADER, claims(user.id, { iat: now - 1000, exp: now - 100 }))
  assertProblem(t, await app.inject(me(`Bearer ${token}`)), EXPIRED_CHALLENGE, 'Token has expired', 'invalid_token')
})

test('GET /users/me: when the token is valid but its user was deleted (in SQL), then 401 invalid_token once the user cache lets go', async (t) => {
  // The user is served from memory for at most SESSION_SYNC_INTERVAL_MS after it was read.
  const app = await build(t, { SESSION_SYNC_INTERVAL_MS: 200 })
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  t.equal((await app.inject(me(`Bearer ${token}`))).statusCode, 200, 'the token works before the user is deleted')
  await app.database.db.delete(users).where(eq(users.id, user.id))
  const deleted = performance.now()
  let res = await app.inject(me(`Bearer ${token}`))
  while (res.statusCode === 200 && performance.now() - deleted < 1000) {
    await new Promise(resolve => setTimeout(resolve, 20))
    res = await app.inject(me(`Bearer ${token}`))
  }
  const took = performance.now() - deleted
  assertInvalidToken(t, res)
  t.ok(took < 200 + 100, `refused ${Math.round(took)} ms after the delete (bound: 200 ms)`)
})

test('GET /users/me: when another instance served the user and it is then deleted, then that instance refuses it within SESSION_SYNC_INTERVAL_MS', async (t) => {
  const [a, b] = await twoInstances(t)
  const user = await register(a)
  const token = await login(a, user.username, user.password)
  t.equal((await b.inject(me(`Bearer ${token}`))).statusCode, 200, 'B has read (and cached) the user')
  await a.database.db.delete(users).where(eq(users.id, user.id))
  const deleted = performance.now()
  let status = 200
  while (status === 200 && performance.now() - deleted < 2000) {
    await new Promise(resolve => setTimeout(resolve, 20))
    status = (await b.inject(me(`Bearer ${token}`))).statusCode
  }
  t.equal(status, 401)
  t.ok(performance.now() - deleted < 1000 + 100, 'within the one-second bound')
})

test('GET /users/me: when the token is bad in any way, then 401 invalid_token and never a 500', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const other = await register(app)
  const token = await login(app, user.username, user.password)
  const [header, payload, signature] = token.split('.')
  const now = Math.floor(Date.now() / 1000)
  const config = testConfig()

  const cases: Array<[string, string]> = [
    ['a garbage string x.y.z', 'Bearer x.y.z'],
    ['empty ("Bearer " and nothing after it)', 'Bearer '],
    ['unsigned: alg none with an empty signature', `Bearer ${b64url({ alg: 'none', typ: 'at+jwt' })}.${b64url(claims(user.id))}.`],
    ['a real one with its signature stripped (trailing dot kept)', `Bearer ${header}.${payload}.`],
    ['a real one whose sub was changed to another user', `Bearer ${withPayload(token, c => ({ ...c, sub: other.id }))}`],
    ['a real one whose preferred_username was changed', `Bearer ${withPayload(token, c => ({ ...c, preferred_username: other.username }))}`],
    ['signed with another secret', `Bearer ${forgeToken(VALID_HEADER, claims(user.id), 'another-secret-0123456789abcdefghijklmnop')}`],
    ['HS512, signed with the right secret', `Bearer ${forgeToken({ alg: 'HS512', typ: 'at+jwt' }, claims(user.id), TEST_SECRET, 'sha512')}`],
    ['missing exp', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { exp: undefined }))}`],
    ['missing iat', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { iat: undefined }))}`],
    ['missing sub', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { sub: undefined }))}`],
    ['missing jti', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { jti: undefined }))}`],
    ['missing preferred_username', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { preferred_username: undefined }))}`],
    ['not valid yet (nbf in the future)', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { nbf: now + 3600 }))}`],
    ['carrying exp as a string', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { exp: String(now + 300) }))}`],
    ['carrying iat as a string', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { iat: String(now) }))}`],
    ['carrying sub as a number', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { sub: 12345 }))}`],
    ['carrying aud as a number', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { aud: 12345 }))}`],
    ['carrying an empty jti', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { jti: '' }))}`],
    ['marked crit with an extension the service does not know', `Bearer ${forgeToken({ alg: 'HS256', typ: 'at+jwt', crit: ['exp-ext'], 'exp-ext': 1 }, claims(user.id))}`],
    ['typed JWT instead of at+jwt', `Bearer ${forgeToken({ alg: 'HS256', typ: 'JWT' }, claims(user.id))}`],
    ['missing typ', `Bearer ${forgeToken({ alg: 'HS256' }, claims(user.id))}`],
    ['from another issuer', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { iss: 'someone-else' }))}`],
    ['for another audience (aud other-api)', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { aud: 'other-api' }))}`],
    ['a real one with "=" padding appended to its signature', `Bearer ${token}=`],
    ['a real one with a fourth segment', `Bearer ${token}.${signature}`],
    ['for a sub that is not a UUID', `Bearer ${forgeToken(VALID_HEADER, claims(user.id, { sub: 'not-a-uuid' }))}`]
  ]

  t.not(config.JWT_AUDIENCE, 'other-api', 'the other audience differs from the configured one')
  t.same(decodePart(token, 0), VALID_HEADER, 'the real token has the header the forged ones start from')
  t.equal((await app.inject(me(`Bearer ${forgeToken(VALID_HEADER, claims(user.id))}`))).statusCode, 200,
    'a token forged with the right secret and valid claims is accepted, so each case below fails for its one change')

  for (const [name, authorization] of cases) {
    await t.test(`when the token is ${name}, then 401 invalid_token`, async (t) => {
      const res = await app.inject(me(authorization))
      t.ok(res.statusCode < 500, `not a 5xx (got ${res.statusCode})`)
      assertInvalidToken(t, res)
    })
  }
})
