import { test } from 'tap'
import { build } from '../helper.js'

test('GET /health/live: when the process runs, then 200 ok', async (t) => {
  const app = await build(t)
  const res = await app.inject({ url: '/health/live' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
})

test('GET /health/ready: when the database answers, then 200; when it does not, then 503 problem', async (t) => {
  const app = await build(t)
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200)
  const ping = app.database.ping
  app.database.ping = async () => { throw new Error('connection refused') }
  t.teardown(() => { app.database.ping = ping })
  const res = await app.inject({ url: '/health/ready' })
  t.equal(res.statusCode, 503)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.equal(res.json().detail, 'The database is unavailable; retry shortly')
})

test('GET /openapi.json: when fetched, then an OpenAPI 3.1 document with the OAuth2 password flow at /auth/token', async (t) => {
  const app = await build(t)
  const res = await app.inject({ url: '/openapi.json' })
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.equal(doc.openapi, '3.1.0')
  const flow = doc.components.securitySchemes.OAuth2PasswordBearer.flows.password
  t.match(flow, { tokenUrl: '/auth/token', refreshUrl: '/auth/token' })
  t.same(Object.keys(flow.scopes).sort(), ['clients:read', 'clients:write', 'roles:write', 'sessions:ended', 'users:read', 'users:write'], 'the service\'s own scopes, for Authorize to offer')
  t.same(Object.keys(doc.paths).sort(), [
    '/.well-known/jwks.json', '/.well-known/oauth-authorization-server', '/admin/clients', '/admin/clients/{client_id}',
    '/admin/clients/{client_id}/secret', '/admin/roles', '/admin/roles/{name}', '/admin/users', '/admin/users/{id}', '/admin/users/{id}/sessions',
    '/auth/email/verify', '/auth/email/verify/resend', '/auth/introspect', '/auth/logout', '/auth/password/forgot',
    '/auth/password/reset', '/auth/register', '/auth/revoke', '/auth/token', '/health/live', '/health/ready', '/sessions/ended', '/sessions/ended/stream',
    '/users/me', '/users/me/password', '/users/me/sessions', '/users/me/sessions/{id}'
  ])
  t.same(doc.paths['/admin/users'].get.security, [{ OAuth2PasswordBearer: ['users:read'] }])
  t.same(doc.paths['/users/me'].get.security, [{ OAuth2PasswordBearer: [] }])
  t.same(doc.paths['/auth/token'].post.security, [])
  t.ok(doc.paths['/auth/token'].post.requestBody.content['application/x-www-form-urlencoded'])
  t.ok(doc.paths['/auth/token'].post.requestBody.content['application/json'])
})

test('GET /openapi.json: when any operation is read, then it has tags, a summary, an operationId and its error responses', async (t) => {
  const app = await build(t)
  const doc = (await app.inject({ url: '/openapi.json' })).json()
  const expected: Record<string, string[]> = {
    'post /auth/register': ['201', '400', '409', '413', '415', '429', '500', '503'],
    'post /auth/token': ['200', '400', '401', '413', '429', '500', '503'],
    'get /users/me': ['200', '401', '429', '500', '503'],
    'post /users/me/password': ['204', '400', '401', '413', '415', '429', '500', '503'],
    'delete /users/me': ['204', '400', '401', '409', '413', '415', '429', '500', '503'],
    'post /auth/password/forgot': ['202', '400', '413', '415', '429', '500', '503'],
    'post /auth/password/reset': ['204', '400', '413', '415', '429', '500', '503'],
    'post /auth/email/verify': ['204', '400', '413', '415', '429', '500', '503'],
    'post /auth/email/verify/resend': ['202', '400', '401', '413', '415', '429', '500', '503'],
    'get /.well-known/jwks.json': ['200', '429', '500'],
    'post /auth/revoke': ['200', '400', '413', '429', '500', '503'],
    'post /auth/logout': ['204', '400', '401', '413', '415', '429', '500', '503'],
    'get /users/me/sessions': ['200', '401', '429', '500', '503'],
    'delete /users/me/sessions': ['204', '400', '401', '413', '415', '429', '500', '503'],
    'delete /users/me/sessions/{id}': ['204', '400', '401', '404', '413', '415', '429', '500', '503'],
    'get /health/ready': ['200', '503'],
    'get /health/live': ['200'],
    'get /admin/users': ['200', '400', '401', '403', '429', '500', '503'],
    'post /admin/users': ['201', '400', '401', '403', '409', '413', '415', '429', '500', '503'],
    'get /admin/users/{id}': ['200', '400', '401', '403', '404', '429', '500', '503'],
    'patch /admin/users/{id}': ['200', '400', '401', '403', '404', '409', '413', '415', '429', '500', '503'],
    'delete /admin/users/{id}': ['204', '400', '401', '403', '404', '409', '413', '415', '429', '500', '503'],
    'get /admin/users/{id}/sessions': ['200', '400', '401', '403', '404', '429', '500', '503'],
    'delete /admin/users/{id}/sessions': ['204', '400', '401', '403', '404', '413', '415', '429', '500', '503'],
    'get /admin/roles': ['200', '401', '403', '429', '500', '503'],
    'put /admin/roles/{name}': ['200', '201', '400', '401', '403', '409', '413', '415', '429', '500', '503'],
    'delete /admin/roles/{name}': ['204', '400', '401', '403', '404', '409', '413', '415', '429', '500', '503'],
    'get /admin/clients': ['200', '401', '403', '429', '500', '503'],
    'post /admin/clients': ['201', '400', '401', '403', '413', '415', '429', '500', '503'],
    'post /admin/clients/{client_id}/secret': ['200', '400', '401', '403', '404', '413', '415', '429', '500', '503'],
    'delete /admin/clients/{client_id}': ['204', '400', '401', '403', '404', '413', '415', '429', '500', '503'],
    'post /auth/introspect': ['200', '400', '401', '413', '429', '500', '503'],
    'get /.well-known/oauth-authorization-server': ['200', '429', '500'],
    'get /sessions/ended': ['200', '400', '401', '403', '429', '500', '503'],
    'get /sessions/ended/stream': ['200', '400', '401', '403', '429', '500', '503']
  }
  for (const [path, methods] of Object.entries<Record<string, { tags: string[], summary: string, operationId: string, responses: Record<string, unknown> }>>(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const key = `${method} ${path}`
      t.ok(op.tags.length > 0, `${key} has tags`)
      t.ok(op.summary, `${key} has a summary`)
      t.match(op.operationId, /^[a-z][A-Za-z]+$/, `${key} has a camelCase operationId`)
      t.same(Object.keys(op.responses).sort(), expected[key].sort(), `${key} documents its statuses`)
    }
  }
  const problem = doc.paths['/users/me'].get.responses['401'].content['application/problem+json'].schema
  t.same(problem, { $ref: '#/components/schemas/Problem' })
  t.ok(doc.components.schemas.Problem.properties.detail)
})

test('GET /docs: when opened, then Swagger UI is served', async (t) => {
  const app = await build(t)
  const res = await app.inject({ url: '/docs/' })
  t.equal(res.statusCode, 200)
  t.match(res.body, /swagger-ui/i)
  const init = await app.inject({ url: '/docs/static/swagger-initializer.js' })
  t.equal(init.statusCode, 200)
})

test('unknown route: when requested, then 404 problem details', async (t) => {
  const app = await build(t)
  const res = await app.inject({ url: '/nope?token=abc' })
  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.same(res.json(), { type: 'about:blank', title: 'Not Found', status: 404, detail: 'No route for GET /nope', code: 'not_found' })
})
