import { existsSync } from 'node:fs'
import { createServer } from 'node:http'
import { test, type Test } from 'tap'
import { loadConfig } from '../src/config.js'
import { build, register, testConfig, uniqueName } from './helper.js'
import { EXECUTABLE, launchBrowser } from './browser.js'

const PAGE_ORIGIN = 'https://app.example.com'
const OTHER_ORIGIN = 'https://evil.example.com'
const preflight = (url: string, origin: string, method = 'POST', headers = 'content-type') => ({
  method: 'OPTIONS' as const,
  url,
  headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers }
})
const corsHeaders = (headers: Record<string, unknown>): string[] => Object.keys(headers).filter(h => h.startsWith('access-control-'))

test('CORS: when CORS_ORIGINS is unset, then no answer carries a CORS header and a preflight is a 404 problem', async (t) => {
  const app = await build(t)
  const res = await app.inject(preflight('/auth/token', PAGE_ORIGIN))
  t.equal(res.statusCode, 404)
  t.match(res.json(), { code: 'not_found' })
  t.same(corsHeaders(res.headers), [])
  const live = await app.inject({ method: 'GET', url: '/health/live', headers: { origin: PAGE_ORIGIN } })
  t.equal(live.statusCode, 200)
  t.same(corsHeaders(live.headers), [])
})

test('CORS: when a listed origin sends a preflight, then 204 names the origin, the methods and the headers, without credentials', async (t) => {
  const app = await build(t, { CORS_ORIGINS: `${PAGE_ORIGIN}, http://127.0.0.1:8080` })
  const res = await app.inject(preflight('/users/me', PAGE_ORIGIN, 'GET', 'authorization,x-request-id'))
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  t.equal(res.headers['access-control-allow-origin'], PAGE_ORIGIN)
  t.equal(res.headers['access-control-allow-methods'], 'GET, HEAD, POST, PUT, PATCH, DELETE')
  t.equal(res.headers['access-control-allow-headers'], 'authorization, content-type, x-request-id')
  t.equal(res.headers['access-control-max-age'], '600')
  t.match(res.headers.vary, /origin/i, 'caches keep one answer per origin')
  t.notOk('access-control-allow-credentials' in res.headers, 'tokens travel in a header, never in cookies')

  const second = await app.inject(preflight('/auth/token', 'http://127.0.0.1:8080'))
  t.equal(second.headers['access-control-allow-origin'], 'http://127.0.0.1:8080', 'every listed origin, reflected alone')

  const answer = await app.inject({ method: 'GET', url: '/users/me', headers: { origin: PAGE_ORIGIN } })
  t.equal(answer.statusCode, 401)
  t.equal(answer.headers['access-control-allow-origin'], PAGE_ORIGIN, 'errors are readable by the page too')
  t.equal(answer.headers['access-control-expose-headers'], 'retry-after, www-authenticate, x-request-id, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset')
})

test('CORS: when a preflight names an unknown path, then it is answered and the request that follows gets a readable 404', async (t) => {
  const app = await build(t, { CORS_ORIGINS: PAGE_ORIGIN })
  const res = await app.inject(preflight('/no-such-route', PAGE_ORIGIN, 'GET'))
  t.equal(res.statusCode, 204)
  const after = await app.inject({ method: 'GET', url: '/no-such-route', headers: { origin: PAGE_ORIGIN } })
  t.equal(after.statusCode, 404)
  t.match(after.json(), { code: 'not_found' })
  t.equal(after.headers['access-control-allow-origin'], PAGE_ORIGIN)

  const bare = await app.inject({ method: 'OPTIONS', url: '/auth/token', headers: { origin: PAGE_ORIGIN } })
  t.equal(bare.statusCode, 404, 'an OPTIONS without Access-Control-Request-Method is no preflight: no route answers it')
  t.match(bare.json(), { code: 'not_found' })
  t.equal(bare.headers['access-control-allow-origin'], PAGE_ORIGIN)
  t.notOk('access-control-allow-methods' in bare.headers)
})

test('CORS: when an origin is not listed, then no CORS header answers it, and its request is still served', async (t) => {
  const app = await build(t, { CORS_ORIGINS: PAGE_ORIGIN })
  const res = await app.inject(preflight('/auth/token', OTHER_ORIGIN))
  t.equal(res.statusCode, 404)
  t.same(corsHeaders(res.headers), [])
  const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { origin: OTHER_ORIGIN } })
  t.equal(jwks.statusCode, 200)
  t.same(corsHeaders(jwks.headers), [])
  const none = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.same(corsHeaders(none.headers), [], 'nor a request without Origin')
})

test('CORS: when CORS_ORIGINS is *, then any origin may read answers, still without credentials', async (t) => {
  const app = await build(t, { CORS_ORIGINS: '*' })
  const res = await app.inject(preflight('/auth/token', OTHER_ORIGIN))
  t.equal(res.statusCode, 204)
  t.equal(res.headers['access-control-allow-origin'], '*')
  t.notOk('access-control-allow-credentials' in res.headers)
  const live = await app.inject({ method: 'GET', url: '/health/live', headers: { origin: OTHER_ORIGIN } })
  t.equal(live.headers['access-control-allow-origin'], '*')
})

test('CORS: when a client is rate limited, then preflights are still answered and the 429 is readable with its Retry-After', async (t) => {
  const app = await build(t, { CORS_ORIGINS: PAGE_ORIGIN, RATE_LIMIT_ENABLED: true, RATE_LIMIT_MAX: 2 })
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) statuses.push((await app.inject({ method: 'GET', url: '/users/me', headers: { origin: PAGE_ORIGIN } })).statusCode)
  t.same(statuses, [401, 401, 429, 429])
  const limited = await app.inject({ method: 'GET', url: '/users/me', headers: { origin: PAGE_ORIGIN } })
  t.equal(limited.statusCode, 429)
  t.equal(limited.headers['access-control-allow-origin'], PAGE_ORIGIN)
  t.match(limited.headers['retry-after'], /^\d+$/)
  t.match(limited.headers['access-control-expose-headers'], /retry-after/)
  for (let i = 0; i < 3; i++) t.equal((await app.inject(preflight('/users/me', PAGE_ORIGIN, 'GET', 'authorization'))).statusCode, 204, `preflight ${i + 1} answered`)
})

test('CORS: when CORS_ORIGINS is not a list of exact origins, then the configuration names the variable and the fix', async (t) => {
  const problem = (value: string): string => {
    try {
      loadConfig({ ...testConfig(), CORS_ORIGINS: value })
      return 'accepted'
    } catch (error) {
      return (error as Error).message
    }
  }
  t.equal(problem('https://app.example.com,http://localhost:5173, http://[::1]:8080'), 'accepted')
  t.equal(problem(' , '), 'accepted', 'an empty list is no CORS')
  t.match(problem('https://app.example.com/'), /CORS_ORIGINS: write "https:\/\/app\.example\.com\/" as the browser sends it: https:\/\/app\.example\.com /)
  t.match(problem('https://app.example.com/spa'), /CORS_ORIGINS: write .* as the browser sends it: https:\/\/app\.example\.com/)
  t.match(problem('https://App.Example.com'), /as the browser sends it: https:\/\/app\.example\.com/)
  t.match(problem('https://app.example.com:443'), /as the browser sends it: https:\/\/app\.example\.com /)
  t.match(problem('app.example.com'), /CORS_ORIGINS: must be http\(s\) origins/)
  t.match(problem('null'), /CORS_ORIGINS: must be http\(s\) origins/)
  t.match(problem('ftp://files.example.com'), /CORS_ORIGINS: must be http\(s\) origins/)
  t.match(problem('*,https://app.example.com'), /CORS_ORIGINS: use \* alone/)
})

test('CORS: the OpenAPI document gains no OPTIONS operation', async (t) => {
  const app = await build(t, { CORS_ORIGINS: PAGE_ORIGIN })
  const paths = (app.swagger() as { paths: Record<string, Record<string, unknown>> }).paths
  t.same(Object.entries(paths).filter(([, operations]) => 'options' in operations).map(([path]) => path), [])
})

/** A page on an origin of its own (another port on 127.0.0.1): the browser app. */
async function pageServer (t: Test): Promise<string> {
  const server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><title>browser client</title>')
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { await new Promise(resolve => server.close(resolve)) })
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

test('CORS from Chromium: when the page origin is listed, then it registers, logs in, calls /users/me and reads bodies and headers; another origin cannot', async (t) => {
  t.ok(existsSync(EXECUTABLE), `a Chromium at ${EXECUTABLE} (apt-get install chromium, or set CHROMIUM_PATH)`)
  const listed = await pageServer(t)
  const unlisted = await pageServer(t)
  const app = await build(t, { CORS_ORIGINS: listed, RATE_LIMIT_ENABLED: true, RATE_LIMIT_TOKEN_MAX: 2 })
  // What reached the service, preflights included (the browser sends them on its own).
  const seen: string[] = []
  app.server.on('request', (request: { method: string, url: string, headers: Record<string, string | undefined> }) => {
    seen.push(`${request.method} ${request.url} ${request.headers.origin ?? '-'}`)
  })
  const base = await app.listen({ host: '127.0.0.1', port: 0 })

  const browser = await launchBrowser(t)
  const page = await browser.newPage()
  await page.goto(`${listed}/`)
  const username = uniqueName('browser')
  const result = await page.evaluate(async ({ base, username }) => {
    const password = 'correct horse battery'
    // JSON is not a "simple" content type: this one is preflighted.
    const registered = await fetch(`${base}/auth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, email: `${username}@example.com`, password })
    })
    // A form body is a simple request, sent without a preflight: the answer itself must allow the origin.
    const login = await fetch(`${base}/auth/token`, { method: 'POST', body: new URLSearchParams({ username, password }) })
    const tokens = await login.json() as { access_token: string, token_type: string }
    // An Authorization header is never simple: preflighted.
    const me = await fetch(`${base}/users/me`, { headers: { authorization: `Bearer ${tokens.access_token}`, 'x-request-id': 'page-call-1' } })
    const forged = await fetch(`${base}/users/me`, { headers: { authorization: 'Bearer not-a-token' } })
    const logins: Array<{ status: number, retryAfter: string | null, error: string }> = []
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${base}/auth/token`, { method: 'POST', body: new URLSearchParams({ username, password }) })
      logins.push({ status: res.status, retryAfter: res.headers.get('retry-after'), error: (await res.json() as { error?: string }).error ?? '' })
      if (res.status === 429) break
    }
    return {
      registered: registered.status,
      login: login.status,
      tokenType: tokens.token_type,
      me: me.status,
      meBody: await me.json() as { username: string },
      meRequestId: me.headers.get('x-request-id'),
      forged: forged.status,
      challenge: forged.headers.get('www-authenticate'),
      logins
    }
  }, { base, username })

  t.equal(result.registered, 201)
  t.equal(result.login, 200)
  t.equal(result.tokenType, 'bearer')
  t.equal(result.me, 200)
  t.equal(result.meBody.username, username, 'the page read the body of /users/me')
  t.equal(result.meRequestId, 'page-call-1', 'the page read X-Request-Id')
  t.equal(result.forged, 401)
  t.match(result.challenge, /^Bearer error="invalid_token"/, 'the page read WWW-Authenticate')
  const last = result.logins.at(-1)
  t.equal(last?.status, 429, 'the token endpoint limit was reached from the page')
  t.equal(last?.error, 'temporarily_unavailable')
  t.match(last?.retryAfter, /^\d+$/, 'the page read Retry-After')
  t.ok(seen.includes(`OPTIONS /auth/register ${listed}`), 'the JSON call was preflighted')
  t.ok(seen.includes(`OPTIONS /users/me ${listed}`), 'the authorized call was preflighted')
  t.notOk(seen.includes(`OPTIONS /auth/token ${listed}`), 'the form login was not')

  const other = await browser.newPage()
  await other.goto(`${unlisted}/`)
  await register(app, { username: uniqueName('other') })
  // No named functions in here: the test's compiler would wrap them in a helper the page does not have.
  const refused = await other.evaluate(async (base) => await Promise.all([
    fetch(`${base}/health/live`),
    fetch(`${base}/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  ].map(async request => await request.then(r => `answered ${r.status}`, (e: Error) => e.name))), base)
  t.same(refused, ['TypeError', 'TypeError'], 'fetch fails in the browser for an origin not listed, simple or preflighted')
  t.ok(seen.includes(`GET /health/live ${unlisted}`), 'the simple request reached the service and was served; the browser kept the answer from the page')
  t.ok(seen.includes(`OPTIONS /auth/register ${unlisted}`), 'the preflight was asked')
  t.notOk(seen.includes(`POST /auth/register ${unlisted}`), 'and, refused, the JSON request was never sent')
})
