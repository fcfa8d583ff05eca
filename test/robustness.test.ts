import { test } from 'tap'
import { build } from './helper.js'

// Inputs a client can send that libraries have turned into 500s elsewhere: each must get a 4xx.
const hostile: Array<{ name: string, method: 'GET' | 'POST', url: string, headers?: Record<string, string>, payload?: string }> = [
  { name: 'bad percent-encoding in the path', method: 'GET', url: '/users/%E0%A4%A' },
  { name: 'bad percent-encoding in the query', method: 'GET', url: '/users/me?x=%E0%A4%A' },
  { name: 'JSON with a charset the parser does not take', method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json; charset=utf-16' }, payload: '{}' },
  { name: 'a content type with no subtype', method: 'POST', url: '/auth/register', headers: { 'content-type': 'application' }, payload: '{}' },
  { name: 'a constructor-poisoned body', method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload: '{"constructor": {"prototype": {"x": 1}}}' },
  { name: 'a deeply nested body', method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload: '['.repeat(5000) + ']'.repeat(5000) },
  { name: 'a NUL byte in the username', method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload: '{"username":"ab\\u0000cd","email":"a@example.com","password":"correct horse"}' },
  { name: 'a NUL byte in the email', method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload: '{"username":"nulmail","email":"a\\u0000@example.com","password":"correct horse"}' },
  { name: 'a NUL byte in the login', method: 'POST', url: '/auth/token', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'username=a%00b&password=secret123' },
  { name: 'a lone surrogate in the login', method: 'POST', url: '/auth/token', headers: { 'content-type': 'application/json' }, payload: '{"username":"a\\ud800b","password":"secret123"}' },
  { name: 'a login longer than any username or email', method: 'POST', url: '/auth/token', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ username: 'u'.repeat(5000), password: 'secret123' }) },
  { name: 'a token that is 10 KB of junk', method: 'GET', url: '/users/me', headers: { authorization: 'Bearer ' + 'a'.repeat(10240) } },
  { name: 'a token whose header is not JSON', method: 'GET', url: '/users/me', headers: { authorization: 'Bearer bm90IGpzb24.e30.sig' } },
  { name: 'a token whose payload is a JSON array', method: 'GET', url: '/users/me', headers: { authorization: `Bearer ${Buffer.from('{"alg":"HS256","typ":"at+jwt"}').toString('base64url')}.${Buffer.from('[1,2]').toString('base64url')}.c2ln` } },
  { name: 'an Authorization header with only the scheme', method: 'GET', url: '/users/me', headers: { authorization: 'Bearer' } },
  { name: 'a wrong method on a route', method: 'GET', url: '/auth/token' }
]

test('any route: when a client sends hostile input, then never a 5xx, and errors in the documented format', async (t) => {
  const app = await build(t)
  for (const request of hostile) {
    const res = await app.inject({ method: request.method, url: request.url, headers: request.headers, payload: request.payload })
    t.ok(res.statusCode < 500, `${request.name}: ${res.statusCode} ${res.body.slice(0, 120)}`)
    if (res.statusCode >= 400) {
      const body = res.json()
      const documented = request.url === '/auth/token' && request.method === 'POST'
        ? typeof body.error === 'string' && typeof body.error_description === 'string'
        : res.headers['content-type']?.toString().startsWith('application/problem+json') === true && typeof body.detail === 'string'
      t.ok(documented, `${request.name}: answered in the documented error format`)
    }
  }
})
