import { test } from 'tap'
import { eq } from 'drizzle-orm'
import { users } from '../../src/db/schema.js'
import {
  assertInvalidToken, assertNotAuthenticated, assertUnauthorized, b64url, build, claimsOf, eventually, forgeToken, headerOf, login, register,
  TEST_SECRET, testConfig, TIMING_MARGIN_MS, twoInstances, validClaims, VALID_HEADER
} from '../helper.js'

const EXPIRED_CHALLENGE = 'Bearer error="invalid_token", error_description="Token has expired"'

const meRequest = (authorization?: string) => ({
  method: 'GET' as const,
  url: '/users/me',
  headers: authorization === undefined ? {} : { authorization }
})

/** The same token with its payload replaced: the header and signature are kept as they were. */
function withPayload (token: string, change: (claims: Record<string, unknown>) => Record<string, unknown>): string {
  const [header, , signature] = token.split('.')
  return `${header}.${b64url(change(claimsOf(token)))}.${signature}`
}

/** Valid claims for the user with some replaced, and those given as undefined removed. */
function claims (userId: string, changes: Record<string, unknown> = {}): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...validClaims(userId), ...changes }
  for (const key of Object.keys(changes)) if (changes[key] === undefined) delete merged[key]
  return merged
}

test('GET /users/me: when the token from a login is valid, then 200 with the user and no password hash', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  const res = await app.inject(meRequest(`Bearer ${token}`))
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['created_at', 'email', 'email_verified', 'id', 'username'])
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
    const res = await app.inject(meRequest(`${scheme} ${token}`))
    t.equal(res.statusCode, 200, `${scheme}: ${res.statusCode} ${res.body.slice(0, 200)}`)
    t.equal(res.json().id, user.id)
  }
})

test('GET /users/me: when a header ends like one already accepted but differs before that, then it is judged on its own', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  t.equal((await app.inject(meRequest(`Bearer ${token}`))).statusCode, 200, 'accepted, and so remembered')
  // Same signature, so the same last characters: the remembered answer must not be reused for any of these.
  assertInvalidToken(t, await app.inject(meRequest(`Bearer ${withPayload(token, (c) => ({ ...c, sub: '00000000-0000-4000-8000-000000000000' }))}`)))
  assertNotAuthenticated(t, await app.inject(meRequest(`Token ${token}`)))
  assertNotAuthenticated(t, await app.inject(meRequest(`XBearer ${token}`)))
  assertNotAuthenticated(t, await app.inject(meRequest(token)))
  const spaced = await app.inject(meRequest(`Bearer   ${token}`))
  t.equal(spaced.statusCode, 200, 'the same token with more spaces is still valid')
  t.equal((await app.inject(meRequest(`Bearer ${token}`))).statusCode, 200, 'and the first form still is')
})

test('GET /users/me: when there is no Authorization header, then 401 not_authenticated with a bare Bearer challenge', async (t) => {
  const app = await build(t)
  assertNotAuthenticated(t, await app.inject(meRequest()))
})

test('GET /users/me: when the Authorization scheme is not Bearer, then 401 not_authenticated with a bare Bearer challenge', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  for (const header of ['Basic abc', `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`, `Token ${token}`, token]) {
    await t.test(`when the header is "${header.slice(0, 20)}...", then 401 not_authenticated`, async (t) => {
      assertNotAuthenticated(t, await app.inject(meRequest(header)))
    })
  }
})

test('GET /users/me: when the token has expired, then 401 token_expired under an invalid_token challenge', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const now = Math.floor(Date.now() / 1000)
  const token = forgeToken(VALID_HEADER, claims(user.id, { iat: now - 1000, exp: now - 100 }))
  assertUnauthorized(t, await app.inject(meRequest(`Bearer ${token}`)), { challenge: EXPIRED_CHALLENGE, detail: 'Token has expired', code: 'token_expired' })
})

test('GET /users/me: when the token is valid but its user was deleted (in SQL), then 401 invalid_token: its sessions announced as ended, or the user cache let go', async (t) => {
  // The user is served from memory for at most USER_CACHE_TTL_MS after it was read.
  const ttlMs = 200
  const app = await build(t, { USER_CACHE_TTL_MS: ttlMs })
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  t.equal((await app.inject(meRequest(`Bearer ${token}`))).statusCode, 200, 'the token works before the user is deleted')
  await app.database.db.delete(users).where(eq(users.id, user.id))
  await eventually(async () => (await app.inject(meRequest(`Bearer ${token}`))).statusCode !== 200,
    { timeoutMs: ttlMs + TIMING_MARGIN_MS, what: 'the deleted user\'s token being refused' })
  // Whichever comes first: the deletion's notification (migrations/0003 trigger) or the end of the cache entry.
  const refused = await app.inject(meRequest(`Bearer ${token}`))
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, 'invalid_token')
  t.ok(['Session has ended', 'Could not validate credentials'].includes(refused.json().detail), refused.json().detail)
  t.match(refused.headers['www-authenticate'], /^Bearer error="invalid_token"/)
})

test('GET /users/me: when another instance served the user and it is then deleted, then that instance refuses it within USER_CACHE_TTL_MS', async (t) => {
  const ttlMs = 1000
  const [a, b] = await twoInstances(t, { USER_CACHE_TTL_MS: ttlMs })
  const user = await register(a)
  const token = await login(a, user.username, user.password)
  t.equal((await b.inject(meRequest(`Bearer ${token}`))).statusCode, 200, 'B has read (and cached) the user')
  await a.database.db.delete(users).where(eq(users.id, user.id))
  let status = 200
  // The bound is the behaviour: the cache lifetime, plus margin for a busy machine.
  await eventually(async () => {
    status = (await b.inject(meRequest(`Bearer ${token}`))).statusCode
    return status !== 200
  }, { timeoutMs: ttlMs + TIMING_MARGIN_MS, what: 'B refusing the deleted user\'s token' })
  t.equal(status, 401)
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
  t.same(headerOf(token), VALID_HEADER, 'the real token has the header the forged ones start from')
  t.equal((await app.inject(meRequest(`Bearer ${forgeToken(VALID_HEADER, claims(user.id))}`))).statusCode, 200,
    'a token forged with the right secret and valid claims is accepted, so each case below fails for its one change')

  for (const [name, authorization] of cases) {
    await t.test(`when the token is ${name}, then 401 invalid_token`, async (t) => {
      const res = await app.inject(meRequest(authorization))
      t.ok(res.statusCode < 500, `not a 5xx (got ${res.statusCode})`)
      assertInvalidToken(t, res)
    })
  }
})
