import { randomUUID } from 'node:crypto'
import { connect } from 'node:net'
import { test } from 'tap'
import {
  bearer, build, forgeToken, formPost, loginPair, pairOf, refresh, register, uniqueName, validClaims, VALID_HEADER, INVALID_CHALLENGE
} from '../helper.js'

/** A FormData as a browser (or Node's fetch) encodes it: the body and its content type with the boundary. */
async function encoded (form: FormData): Promise<{ payload: Buffer, headers: Record<string, string> }> {
  const request = new Request('http://127.0.0.1/', { method: 'POST', body: form })
  return { payload: Buffer.from(await request.arrayBuffer()), headers: { 'content-type': request.headers.get('content-type') ?? '' } }
}

const formData = (fields: Record<string, string>): FormData => {
  const form = new FormData()
  for (const [name, value] of Object.entries(fields)) form.append(name, value)
  return form
}

const multipartPost = async (url: string, form: FormData) => ({ method: 'POST' as const, url, ...await encoded(form) })

const BOUNDARY = 'client-api-test-boundary'
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`
const part = (name: string, value: string): string => `--${BOUNDARY}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`

/** Sends raw bytes on a fresh connection and collects what comes back until the server closes it or 15 s pass (a hang, not a slow box). */
async function rawExchange (port: number, chunks: Array<string | Buffer>, endWrite: boolean): Promise<{ answer: string, closed: boolean }> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    const timer = setTimeout(() => { socket.destroy(); resolve({ answer, closed: false }) }, 15_000)
    socket.on('data', (data) => { answer += data.toString('latin1') })
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve({ answer, closed: true }) })
    socket.on('connect', () => {
      for (const chunk of chunks) socket.write(chunk)
      if (endWrite) socket.end()
    })
  })
}

test('POST /auth/token: when a front end sends the login as multipart FormData, then it is taken like the form, fields only', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const fields = { grant_type: 'password', username: user.username, password: user.password }

  const res = await app.inject(await multipartPost('/auth/token', formData(fields)))
  t.equal(res.statusCode, 200, 'a FormData login')
  t.equal(res.headers['cache-control'], 'no-store')
  const pair = pairOf(res)
  t.equal((await app.inject({ url: '/users/me', headers: bearer(pair.access) })).json().username, user.username)
  const refreshed = await app.inject(await multipartPost('/auth/token', formData({ grant_type: 'refresh_token', refresh_token: pair.refresh })))
  t.equal(refreshed.statusCode, 200, 'a refresh by FormData too')

  // The same fields validate exactly as a urlencoded form's: the same answer for each.
  const cases: Array<[string, Array<[string, string]>]> = [
    ['no username', [['password', 'x']]],
    ['an empty password', [['username', user.username], ['password', '']]],
    ['a repeated username', [['username', user.username], ['username', 'other'], ['password', user.password]]],
    ['a wrong password', [['username', user.username], ['password', 'not the password']]],
    ['an unknown grant type', [['grant_type', 'implicit']]],
    ['a malformed scope', [['username', user.username], ['password', user.password], ['scope', 'a  "b']]]
  ]
  for (const [what, entries] of cases) {
    const form = new FormData()
    for (const [name, value] of entries) form.append(name, value)
    const asMultipart = await app.inject(await multipartPost('/auth/token', form))
    const asForm = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams(entries).toString() })
    t.equal(asMultipart.statusCode, asForm.statusCode, `${what}: same status (${asForm.statusCode})`)
    t.same(asMultipart.json(), asForm.json(), `${what}: same error`)
    t.ok(asForm.statusCode >= 400 && asForm.statusCode < 500, `${what}: refused`)
  }

  const withFile = formData(fields)
  withFile.append('avatar', new Blob(['GIF89a'], { type: 'image/gif' }), 'avatar.gif')
  const file = await app.inject(await multipartPost('/auth/token', withFile))
  t.equal(file.statusCode, 400, 'a file part is refused')
  t.same(file.json(), { error: 'invalid_request', error_description: 'multipart/form-data takes form fields only, not files' })

  // Multipart is the token endpoint's only: revocation keeps to forms and JSON.
  const revoke = await app.inject(await multipartPost('/auth/revoke', formData({ token: pair.refresh })))
  t.same([revoke.statusCode, revoke.json().error_description], [400, 'Content-Type must be application/x-www-form-urlencoded or application/json'])
})

test('POST /auth/token: when a multipart body is malformed, truncated, too large or has too many fields, then 400 or 413 and never a 500 or a wait', async (t) => {
  const app = await build(t, { BODY_LIMIT: 4096 })
  const user = await register(app)
  const login = part('username', user.username) + part('password', user.password)
  const malformed: Array<[string, string, string, number, string]> = [
    ['no closing boundary', MULTIPART, login, 400, 'multipart/form-data body is malformed'],
    // A part with no name is no field (busboy skips it): an empty form.
    ['a part without headers', MULTIPART, `--${BOUNDARY}\r\n\r\nvalue\r\n--${BOUNDARY}--\r\n`, 400, 'username is required'],
    ['no boundary parameter', 'multipart/form-data', `${login}--${BOUNDARY}--\r\n`, 400, 'multipart/form-data body is malformed'],
    ['not multipart inside', MULTIPART, 'username=alice&password=secret', 400, 'multipart/form-data body is malformed'],
    ['a field named __proto__', MULTIPART, `${part('__proto__', 'x')}--${BOUNDARY}--\r\n`, 400, 'multipart/form-data body is malformed'],
    ['seventeen fields', MULTIPART, `${Array.from({ length: 17 }, (_, i) => part(`f${i}`, 'x')).join('')}--${BOUNDARY}--\r\n`, 400, 'multipart/form-data has too many fields'],
    ['a body over BODY_LIMIT', MULTIPART, `${part('password', 'p'.repeat(5000))}--${BOUNDARY}--\r\n`, 413, 'Request body is larger than 4096 bytes']
  ]
  for (const [what, contentType, payload, status, description] of malformed) {
    const res = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'content-type': contentType }, payload })
    t.equal(res.statusCode, status, `${what}: ${res.body}`)
    t.same(res.json(), { error: 'invalid_request', error_description: description }, what)
  }
  const empty = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'content-type': MULTIPART }, payload: '' })
  t.same(empty.json(), { error: 'invalid_request', error_description: 'username is required' }, 'an empty multipart body is an empty form')

  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  const head = (length: string) => `POST /auth/token HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: ${MULTIPART}\r\n${length}\r\n`

  // The client sends half of what it announced and closes: the request ends there, the server goes on.
  const truncated = await rawExchange(port, [head(`content-length: ${login.length + 200}\r\n`), login.slice(0, 40)], true)
  t.ok(truncated.closed, 'a truncated body ends its connection')
  t.notMatch(truncated.answer, /^HTTP\/1\.1 5/, 'never a 5xx')

  // A chunked body has no length up front: cut off once past BODY_LIMIT.
  const chunk = part('password', 'p'.repeat(1000))
  const chunked = [head('transfer-encoding: chunked\r\n'), ...Array.from({ length: 8 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`)]
  const oversized = await rawExchange(port, chunked, false)
  t.ok(oversized.closed || /^HTTP\/1\.1 413/.test(oversized.answer), `a chunked body over the limit is refused or cut off (${oversized.answer.slice(0, 40)})`)
  t.notMatch(oversized.answer, /^HTTP\/1\.1 5/, 'never a 5xx')

  // After all that, a browser's FormData by fetch still logs in.
  const res = await fetch(`http://127.0.0.1:${port}/auth/token`, { method: 'POST', body: formData({ username: user.username, password: user.password }) })
  t.equal(res.status, 200, 'the service still answers')
})

test('routes that take no body: when an empty body comes with any content type, or JSON, then it is taken; other bodies are refused as before', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const pair = await loginPair(app, user)
  const unknownSession = `/users/me/sessions/${randomUUID()}`
  const bodies: Array<[string, Record<string, string>, string, number]> = [
    ['JSON with no body', { 'content-type': 'application/json' }, '', 404],
    ['JSON {}', { 'content-type': 'application/json' }, '{}', 404],
    ['an empty form', { 'content-type': 'application/x-www-form-urlencoded' }, '', 404],
    ['empty text', { 'content-type': 'text/plain' }, '', 404],
    ['an empty multipart body', { 'content-type': MULTIPART }, '', 404],
    ['JSON that does not parse', { 'content-type': 'application/json; charset=utf-8' }, '{"a":', 400],
    ['some text', { 'content-type': 'text/plain' }, 'hello', 415],
    ['a form', { 'content-type': 'application/x-www-form-urlencoded' }, 'a=1', 415]
  ]
  for (const [what, headers, payload, status] of bodies) {
    const res = await app.inject({ method: 'DELETE', url: unknownSession, headers: { ...headers, ...bearer(pair.access) }, payload })
    t.equal(res.statusCode, status, `DELETE a session, ${what}: ${status === 404 ? 'the body is not what is wrong' : 'refused'} (${res.body})`)
  }
  const logout = await app.inject({ method: 'POST', url: '/auth/logout', headers: { 'content-type': 'application/json', ...bearer(pair.access) } })
  t.equal(logout.statusCode, 204, 'POST /auth/logout with content-type: application/json and no body')
  t.equal((await app.inject({ url: '/users/me', headers: bearer(pair.access) })).statusCode, 401, 'and the session has ended')

  // Routes that take a body keep their rules: JSON, and not empty.
  const emptyJson = await app.inject({ method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload: '' })
  t.same([emptyJson.statusCode, emptyJson.json().detail], [400, 'Request body must not be empty'])
  const text = await app.inject({ method: 'POST', url: '/auth/register', headers: { 'content-type': 'text/plain' }, payload: '' })
  t.equal(text.statusCode, 415, 'register still takes JSON only')
})

test('validation: when several inputs are invalid, then every one is reported at once in plain words, without a regular expression', async (t) => {
  const app = await build(t)
  const res = await app.inject({ method: 'POST', url: '/auth/register', payload: { username: 'a b', email: 'not-an-email', password: 'short', extra: 1 } })
  t.equal(res.statusCode, 400)
  const problem = res.json()
  t.same(problem.errors, [
    { field: 'username', message: 'must be 3 to 32 letters, digits, _, . or -' },
    { field: 'email', message: 'must be an email address' },
    { field: 'password', message: 'must be at least 8 characters' }
  ])
  t.equal(problem.detail, 'username: must be 3 to 32 letters, digits, _, . or -; email: must be an email address; password: must be at least 8 characters')
  t.same([problem.type, problem.title, problem.status, problem.code], ['about:blank', 'Bad Request', 400, 'validation_error'], 'the problem keeps its shape')

  const missing = await app.inject({ method: 'POST', url: '/auth/register', payload: { username: uniqueName() } })
  t.same(missing.json().errors, [{ field: 'email', message: 'is required' }, { field: 'password', message: 'is required' }])

  const user = await register(app)
  const pair = await loginPair(app, user)
  const param = await app.inject({ method: 'DELETE', url: '/users/me/sessions/not-a-uuid', headers: bearer(pair.access) })
  t.same(param.json().errors, [{ field: 'id', message: 'must be a UUID' }], 'a path parameter too')

  const token = await app.inject({ method: 'POST', url: '/auth/token', payload: { username: 5, password: ['x'] } })
  t.same(token.json(), { error: 'invalid_request', error_description: 'username: must be a string; password: must be a string' }, 'the token endpoint lists them all, in its own format')

  for (const answer of [res, missing, param, token]) t.notMatch(answer.body, /pattern|\^|\$"|\[A-Z/, 'no regular expression is shown')
})

test('GET /users/me: when the access token has expired, then 401 token_expired, while a forged one stays invalid_token', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const now = Math.floor(Date.now() / 1000)
  const expired = await app.inject({ url: '/users/me', headers: bearer(forgeToken(VALID_HEADER, { ...validClaims(user.id), iat: now - 1000, exp: now - 100 })) })
  t.equal(expired.statusCode, 401)
  t.equal(expired.json().code, 'token_expired')
  t.equal(expired.headers['www-authenticate'], 'Bearer error="invalid_token", error_description="Token has expired"', 'the RFC 6750 challenge is unchanged')
  const forged = await app.inject({ url: '/users/me', headers: bearer(forgeToken(VALID_HEADER, validClaims(user.id), 'another-secret-of-thirty-two-bytes!!')) })
  t.same([forged.json().code, forged.headers['www-authenticate']], ['invalid_token', INVALID_CHALLENGE])
})

test('POST /auth/token: when refreshes and password logins come from one address, then each has its own rate-limit budget', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: true, RATE_LIMIT_TOKEN_MAX: 2, RATE_LIMIT_REFRESH_MAX: 3 })
  const user = await register(app)
  const login = async () => await app.inject(formPost('/auth/token', { username: user.username, password: user.password }))

  const first = await login()
  t.equal(first.headers['x-ratelimit-limit'], '2', 'a password login counts against RATE_LIMIT_TOKEN_MAX')
  let token = pairOf(first).refresh
  for (let i = 1; i <= 3; i++) {
    const res = await refresh(app, token)
    t.equal(res.statusCode, 200, `refresh ${i} of 3`)
    t.same([res.headers['x-ratelimit-limit'], res.headers['x-ratelimit-remaining']], ['3', String(3 - i)], 'against RATE_LIMIT_REFRESH_MAX')
    token = pairOf(res).refresh
  }
  const refused = await refresh(app, token)
  t.equal(refused.statusCode, 429, 'the fourth refresh is over its budget')
  t.equal(refused.json().error, 'temporarily_unavailable')
  t.ok(Number(refused.headers['retry-after']) > 0, 'with Retry-After')

  t.equal((await login()).statusCode, 200, 'the refreshes took nothing from the password logins')
  const third = await login()
  t.equal(third.statusCode, 429, 'the password budget is exactly RATE_LIMIT_TOKEN_MAX')
  t.equal((await refresh(app, token)).statusCode, 429, 'and the refresh budget stays spent')
})
