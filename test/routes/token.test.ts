import { test } from 'tap'
import { eq } from 'drizzle-orm'
import { users } from '../../src/db/schema.js'
import { parsePhc } from '../../src/services/password-hasher.js'
import { build, claimsOf, formPost, headerOf, register, testConfig, uniqueName } from '../helper.js'

const form = (fields: Record<string, string>, headers: Record<string, string> = {}) => formPost('/auth/token', fields, headers)

test('POST /auth/token: when a form login is right, then 200 with a bearer token and no-store', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const res = await app.inject(form({ grant_type: 'password', username: user.username, password: user.password }))
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.equal(body.token_type, 'bearer')
  t.equal(body.expires_in, 900)
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type'])
  t.equal(body.scope, '', 'a plain user holds no scope beyond a valid token')
  t.match(body.refresh_token, /^[A-Za-z0-9_-]{43}$/)
  const header = headerOf(body.access_token)
  t.same(header, { alg: 'HS256', typ: 'at+jwt' })
  const claims = claimsOf(body.access_token)
  const config = testConfig()
  t.equal(claims.sub, user.id)
  t.equal(claims.preferred_username, user.username)
  t.equal(claims.iss, config.JWT_ISSUER)
  t.equal(claims.aud, config.JWT_AUDIENCE)
  t.equal((claims.exp as number) - (claims.iat as number), 900)
  t.match(claims.jti, /^[0-9a-f-]{36}$/)
  t.equal(claims.scope, '')
  t.same(claims.roles, ['user'], 'every registered user has the user role')
})

test('POST /auth/token: when grant_type is omitted or JSON is sent, then it is the password grant', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const omitted = await app.inject(form({ username: user.username, password: user.password }))
  t.equal(omitted.statusCode, 200)
  const asJson = await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'password', username: user.username, password: user.password } })
  t.equal(asJson.statusCode, 200)
  t.type(asJson.json().access_token, 'string')
})

test('POST /auth/token: when the login is an email in any case, then it logs in', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const res = await app.inject(form({ username: user.email.toUpperCase(), password: user.password }))
  t.equal(res.statusCode, 200)
  t.equal(claimsOf(res.json().access_token).sub, user.id)
})

test('POST /auth/token: when the username differs only in case, then it logs in', async (t) => {
  const app = await build(t)
  const user = await register(app, { username: uniqueName('MixedCase') })
  const res = await app.inject(form({ username: user.username.toLowerCase(), password: user.password }))
  t.equal(res.statusCode, 200)
})

test('POST /auth/token: when the password is wrong or the user unknown, then byte-identical 401 invalid_grant', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const wrong = await app.inject(form({ username: user.username, password: 'wrong password' }))
  const unknown = await app.inject(form({ username: 'nobody_' + user.username, password: 'wrong password' }))
  const unknownEmail = await app.inject(form({ username: 'nobody@example.com', password: 'wrong password' }))
  const caseChanged = await app.inject(form({ username: user.username, password: user.password.toUpperCase() }))
  for (const res of [wrong, unknown, unknownEmail, caseChanged]) {
    t.equal(res.statusCode, 401)
    t.equal(res.body, '{"error":"invalid_grant","error_description":"Incorrect username or password"}')
    t.equal(res.headers['www-authenticate'], 'Bearer')
    t.equal(res.headers['cache-control'], 'no-store')
    t.equal(res.headers['content-type'], wrong.headers['content-type'])
    t.equal(res.headers['content-length'], wrong.headers['content-length'])
  }
})

test('POST /auth/token: when the user is unknown, then a hash is still verified (same work as a wrong password)', async (t) => {
  const app = await build(t)
  let verifies = 0
  const original = app.passwordHasher.verify
  app.passwordHasher.verify = async (hash, password) => { verifies++; return await original(hash, password) }
  t.teardown(() => { app.passwordHasher.verify = original })
  await app.inject(form({ username: 'nobody_at_all', password: 'whatever1' }))
  await app.inject(form({ username: 'bad\u0000name', password: 'whatever1' }))
  t.equal(verifies, 2)
})

test('POST /auth/token: when another grant type is asked for, then 400 unsupported_grant_type', async (t) => {
  const app = await build(t)
  for (const grantType of ['implicit', 'authorization_code', 'urn:ietf:params:oauth:grant-type:jwt-bearer', '']) {
    const res = await app.inject(form({ grant_type: grantType, username: 'a', password: 'b' }))
    t.equal(res.statusCode, 400, grantType)
    t.equal(res.json().error, 'unsupported_grant_type')
  }
})

const malformed: Array<[string, { headers?: Record<string, string>, payload?: string }, RegExp]> = [
  ['the username is missing', { payload: 'password=secret123' }, /username is required/],
  ['the password is empty', { payload: 'username=alice&password=' }, /password is required/],
  ['a field is repeated', { payload: 'username=a&username=b&password=secret123' }, /username/],
  ['the body is empty', { payload: '' }, /username is required|body/],
  ['the body is text/plain', { headers: { 'content-type': 'text/plain' }, payload: 'username=a&password=b' }, /Content-Type/],
  ['the JSON is malformed', { headers: { 'content-type': 'application/json' }, payload: '{"username": "a", "password": "hunter2hunter2",' }, /not valid JSON/],
  ['the JSON field is not a string', { headers: { 'content-type': 'application/json' }, payload: '{"username": "a", "password": 12345678}' }, /password/],
  ['the JSON is an array', { headers: { 'content-type': 'application/json' }, payload: '[]' }, /object/]
]

for (const [when, request, description] of malformed) {
  test(`POST /auth/token: when ${when}, then 400 invalid_request`, async (t) => {
    const app = await build(t)
    const res = await app.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...request.headers },
      payload: request.payload
    })
    t.equal(res.statusCode, 400)
    t.equal(res.json().error, 'invalid_request')
    t.match(res.json().error_description, description)
    t.notMatch(res.body, /hunter2/)
  })
}

test('POST /auth/token: when the client authenticates with HTTP Basic or client_id, then it is ignored', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const basic = Buffer.from('my-client:my-secret').toString('base64')
  const withBasic = await app.inject(form({ username: user.username, password: user.password }, { authorization: `Basic ${basic}` }))
  t.equal(withBasic.statusCode, 200)
  const withClientId = await app.inject(form({ username: user.username, password: user.password, client_id: 'web', client_secret: 'x' }))
  t.equal(withClientId.statusCode, 200)
})

test('POST /auth/token: when the body is over the limit, then 413 in the OAuth format', async (t) => {
  const app = await build(t, { BODY_LIMIT: 1024 })
  const res = await app.inject(form({ username: 'a', password: 'p'.repeat(2000) }))
  t.equal(res.statusCode, 413)
  t.equal(res.json().error, 'invalid_request')
})

test('POST /auth/token: when the limit for logins is reached, then 429 with Retry-After', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: true, RATE_LIMIT_TOKEN_MAX: 2 })
  const codes: number[] = []
  let last
  for (let i = 0; i < 3; i++) {
    last = await app.inject(form({ username: 'someone', password: 'wrong-password' }))
    codes.push(last.statusCode)
  }
  t.same(codes, [401, 401, 429])
  t.ok(Number(last?.headers['retry-after']) > 0)
  t.equal(last?.json().error, 'temporarily_unavailable')
})

test('POST /auth/token: when the stored hash has other argon2 parameters, then a successful login rehashes it', async (t) => {
  const weak = await build(t)
  const user = await register(weak)
  const [before] = await weak.database.db.select().from(users).where(eq(users.id, user.id))
  t.same(parsePhc(before.passwordHash), { memoryCost: 1024, timeCost: 1, parallelism: 1 })

  const strong = await build(t, { DATABASE_URL: weak.config.DATABASE_URL, ARGON2_TIME_COST: 2 }, { database: weak.database })
  const wrong = await strong.inject(form({ username: user.username, password: 'not the password' }))
  t.equal(wrong.statusCode, 401)
  const [unchanged] = await strong.database.db.select().from(users).where(eq(users.id, user.id))
  t.equal(unchanged.passwordHash, before.passwordHash, 'a failed login changes nothing')

  const ok = await strong.inject(form({ username: user.username, password: user.password }))
  t.equal(ok.statusCode, 200)
  const [after] = await strong.database.db.select().from(users).where(eq(users.id, user.id))
  t.same(parsePhc(after.passwordHash), { memoryCost: 1024, timeCost: 2, parallelism: 1 })
  const again = await strong.inject(form({ username: user.username, password: user.password }))
  t.equal(again.statusCode, 200, 'the new hash verifies')
})

test('POST /auth/token and /auth/revoke: when no body is sent at all, then 400 invalid_request for the first missing field; a JSON null is not an object', async (t) => {
  const app = await build(t)
  const noBody = await app.inject({ method: 'POST', url: '/auth/token' })
  t.equal(noBody.statusCode, 400)
  t.same(noBody.json(), { error: 'invalid_request', error_description: 'username is required' })
  t.same((await app.inject({ method: 'POST', url: '/auth/revoke' })).json(), { error: 'invalid_request', error_description: 'token is required' })
  const jsonNull = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'content-type': 'application/json' }, payload: 'null' })
  t.equal(jsonNull.statusCode, 400)
  t.same(jsonNull.json(), { error: 'invalid_request', error_description: 'body: must be an object' })
})
