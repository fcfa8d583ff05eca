import { test } from 'tap'
import { build, register, uniqueName } from '../helper.js'

const json = (payload: unknown) => ({ method: 'POST' as const, url: '/auth/register', payload: payload as Record<string, unknown> })

test('POST /auth/register: when the input is valid, then 201 with the user and never the hash', async (t) => {
  const app = await build(t)
  const username = uniqueName('Alice')
  const res = await app.inject(json({ username, email: `${username}@Example.com`, password: 'correct horse' }))
  t.equal(res.statusCode, 201)
  const body = res.json()
  t.match(body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
  t.equal(body.username, username)
  t.equal(body.email, `${username}@Example.com`)
  t.ok(!Number.isNaN(Date.parse(body.created_at)))
  t.same(Object.keys(body).sort(), ['created_at', 'email', 'email_verified', 'id', 'username'])
  t.notMatch(res.body, /argon2|password/)
})

test('POST /auth/register: when unknown fields such as role are sent, then they are ignored', async (t) => {
  const app = await build(t)
  const username = uniqueName()
  const res = await app.inject(json({ username, email: `${username}@example.com`, password: 'correct horse', role: 'admin', is_superuser: true }))
  t.equal(res.statusCode, 201)
  t.same(Object.keys(res.json()).sort(), ['created_at', 'email', 'email_verified', 'id', 'username'])
})

test('POST /auth/register: when the username or email is taken in any case, then 409 with the seeds\' message', async (t) => {
  const app = await build(t)
  const user = await register(app)
  for (const body of [
    { username: user.username.toUpperCase(), email: `other_${user.username}@example.com`, password: 'correct horse' },
    { username: `other_${user.username}`, email: user.email.toUpperCase(), password: 'correct horse' }
  ]) {
    const res = await app.inject(json(body))
    t.equal(res.statusCode, 409)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.same(res.json(), { type: 'about:blank', title: 'Conflict', status: 409, detail: 'Username or email already registered', code: 'user_exists' })
  }
})

test('POST /auth/register: when forty registrations of one username race, then one 201 and 39 409s', async (t) => {
  const app = await build(t)
  const username = uniqueName('race')
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) =>
    app.inject(json({ username, email: `${username}_${i}@example.com`, password: 'correct horse' }))))
  const codes = results.map(r => r.statusCode)
  t.equal(codes.filter(c => c === 201).length, 1)
  t.equal(codes.filter(c => c === 409).length, 39)
})

const invalid: Array<[string, Record<string, unknown>, string, RegExp]> = [
  ['the username is too short', { username: 'ab' }, 'username', /^must be 3 to 32 letters, digits, _, \. or -$/],
  ['the username is too long', { username: 'a'.repeat(33) }, 'username', /^must be 3 to 32 letters/],
  ['the username has a space', { username: 'bad name' }, 'username', /^must be 3 to 32 letters/],
  ['the username has an @', { username: 'bad@name' }, 'username', /^must be 3 to 32 letters/],
  ['the username is a number', { username: 12345 }, 'username', /^must be a string$/],
  ['the email is not an email', { email: 'not-an-email' }, 'email', /^must be an email address$/],
  ['the email is longer than 254', { email: `${'a'.repeat(250)}@example.com` }, 'email', /^must be at most 254 characters$/],
  ['the password is shorter than 8', { password: 'short' }, 'password', /^must be at least 8 characters$/],
  ['the password is longer than 128', { password: 'p'.repeat(129) }, 'password', /^must be at most 128 characters$/],
  ['the password is missing', { password: undefined }, 'password', /^is required$/],
  ['the password is not a string', { password: 12345678 }, 'password', /^must be a string$/],
  ['the password has a lone surrogate', { password: 'abcdefgh\ud800' }, 'password', /well-formed/]
]

for (const [when, change, field, reason] of invalid) {
  test(`POST /auth/register: when ${when}, then 400 naming ${field}`, async (t) => {
    const app = await build(t)
    const username = uniqueName()
    const body: Record<string, unknown> = { username, email: `${username}@example.com`, password: 'correct horse', ...change }
    for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key]
    const res = await app.inject(json(body))
    t.equal(res.statusCode, 400)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    const problem = res.json()
    t.equal(problem.code, 'validation_error')
    t.equal(problem.errors[0].field, field)
    t.match(problem.errors[0].message, reason)
    t.same(problem.errors.map((e: { field: string }) => e.field), [field], 'only the field that is wrong')
    t.match(problem.detail, new RegExp(`^${field}: `))
  })
}

test('POST /auth/register: when passwords of 8 and 128 characters of any Unicode are sent, then both are accepted', async (t) => {
  const app = await build(t)
  for (const password of ['🔑🔑🔑🔑🔑🔑🔑🔑', 'ü'.repeat(128)]) {
    const username = uniqueName()
    const res = await app.inject(json({ username, email: `${username}@example.com`, password }))
    t.equal(res.statusCode, 201, `a password of ${[...password].length} code points`)
  }
})

test('POST /auth/register: when the body is not JSON, then 415', async (t) => {
  const app = await build(t)
  for (const contentType of ['application/x-www-form-urlencoded', 'text/plain', 'application/xml']) {
    const res = await app.inject({ method: 'POST', url: '/auth/register', headers: { 'content-type': contentType }, payload: 'username=abc' })
    t.equal(res.statusCode, 415, contentType)
    t.equal(res.json().code, 'unsupported_media_type')
  }
})

test('POST /auth/register: when the JSON is malformed, then 400 without echoing the body', async (t) => {
  const app = await build(t)
  const res = await app.inject({ method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload: '{"password": "hunter22hunter", x' })
  t.equal(res.statusCode, 400)
  t.equal(res.json().detail, 'Request body is not valid JSON')
  t.notMatch(res.body, /hunter22/)
})

test('POST /auth/register: when the body is empty or not an object, then 400', async (t) => {
  const app = await build(t)
  for (const payload of ['', 'null', '[]', '"text"', '{"__proto__": {"x": 1}}']) {
    const res = await app.inject({ method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload })
    t.equal(res.statusCode, 400, `body ${JSON.stringify(payload)}`)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
  }
})

test('POST /auth/register: when the body is over the limit, then 413', async (t) => {
  const app = await build(t, { BODY_LIMIT: 2048 })
  const res = await app.inject(json({ username: 'big', email: 'big@example.com', password: 'x'.repeat(4096) }))
  t.equal(res.statusCode, 413)
  t.equal(res.json().code, 'payload_too_large')
})

test('POST /auth/register: when the limit for registrations is reached, then 429 with Retry-After', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: true, RATE_LIMIT_REGISTER_MAX: 2 })
  const codes: number[] = []
  let last
  for (let i = 0; i < 3; i++) {
    const username = uniqueName()
    last = await app.inject(json({ username, email: `${username}@example.com`, password: 'correct horse' }))
    codes.push(last.statusCode)
  }
  t.same(codes, [201, 201, 429])
  t.ok(Number(last?.headers['retry-after']) > 0)
  t.equal(last?.json().code, 'rate_limited')
})
