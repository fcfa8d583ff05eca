import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import {
  as, bearer, build, claimsOf, embeddedDatabase, eventually, forgeToken, formPost, loginPair, me, register, registerAdmin,
  TIMING_MARGIN_MS, twoInstances, VALID_HEADER, validClaims
} from '../helper.js'

interface Created {
  client_id: string
  client_secret: string
  name: string
  scopes: string[]
  created_at: string
}

async function createClient (app: FastifyInstance, adminToken: string, scopes: string[] = ['sessions:ended'], name = 'orders-service'): Promise<Created> {
  const res = await app.inject(as(adminToken, { method: 'POST', url: '/admin/clients', payload: { name, scopes } }))
  if (res.statusCode !== 201) throw new Error(`create client failed: ${res.statusCode} ${res.body}`)
  return res.json()
}

const basic = (id: string, secret: string): Record<string, string> =>
  ({ authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}` })

const clientToken = async (app: FastifyInstance, client: Pick<Created, 'client_id' | 'client_secret'>, fields: Record<string, string> = {}) =>
  await app.inject(formPost('/auth/token', { grant_type: 'client_credentials', ...fields }, basic(client.client_id, client.client_secret)))

async function accessTokenOf (app: FastifyInstance, client: Created): Promise<string> {
  const res = await clientToken(app, client)
  if (res.statusCode !== 200) throw new Error(`client_credentials failed: ${res.statusCode} ${res.body}`)
  return res.json().access_token
}

const introspect = async (app: FastifyInstance, client: Created, token: string) =>
  await app.inject(formPost('/auth/introspect', { token }, basic(client.client_id, client.client_secret)))

const INVALID_CLIENT = { error: 'invalid_client', error_description: 'Client authentication failed' }
const BASIC_CHALLENGE = 'Basic realm="auth-service"'

test('admin clients: when an administrator registers, lists, rotates and deletes a client, then the secret is shown once and each step answers as documented', async (t) => {
  const app = await build(t)
  const admin = await registerAdmin(app)
  const created = await app.inject(as(admin.token, { method: 'POST', url: '/admin/clients', payload: { name: 'orders-service', scopes: ['sessions:ended', 'users:read'] } }))
  t.equal(created.statusCode, 201)
  t.equal(created.headers['cache-control'], 'no-store', 'a secret is never cached')
  const client = created.json() as Created
  t.match(client, { name: 'orders-service', scopes: ['sessions:ended', 'users:read'] })
  t.match(client.client_secret, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url')

  const list = await app.inject(as(admin.token, { method: 'GET', url: '/admin/clients' }))
  t.equal(list.statusCode, 200)
  const listed = list.json().find((c: { client_id: string }) => c.client_id === client.client_id)
  t.same(Object.keys(listed).sort(), ['client_id', 'created_at', 'name', 'scopes', 'secret_rotated_at'], 'no secret, no hash')
  t.notOk(list.body.includes(client.client_secret))

  const unknown = await app.inject(as(admin.token, { method: 'POST', url: '/admin/clients', payload: { name: 'x', scopes: ['nobody:defines'] } }))
  t.equal(unknown.statusCode, 400)
  t.same(unknown.json().errors, [{ field: 'scopes', message: 'no role defines nobody:defines' }])

  const user = await register(app)
  const { access: userToken } = await loginPair(app, user)
  t.equal((await app.inject(as(userToken, { method: 'POST', url: '/admin/clients', payload: { name: 'x', scopes: [] } }))).statusCode, 403, 'clients:write is needed')
  t.equal((await app.inject(as(userToken, { method: 'GET', url: '/admin/clients' }))).statusCode, 403, 'clients:read is needed')

  const before = await accessTokenOf(app, client)
  const rotated = await app.inject(as(admin.token, { method: 'POST', url: `/admin/clients/${client.client_id}/secret` }))
  t.equal(rotated.statusCode, 200)
  t.equal(rotated.headers['cache-control'], 'no-store')
  const { client_secret: newSecret } = rotated.json()
  t.not(newSecret, client.client_secret)
  const old = await clientToken(app, client)
  t.equal(old.statusCode, 401, 'the old secret is refused at once')
  t.same(old.json(), INVALID_CLIENT)
  t.equal((await clientToken(app, { ...client, client_secret: newSecret })).statusCode, 200, 'the new one works')
  t.equal((await introspect(app, { ...client, client_secret: newSecret }, before)).json().active, true, 'tokens issued before a rotation stay valid')

  const missing = '0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41'
  t.equal((await app.inject(as(admin.token, { method: 'POST', url: `/admin/clients/${missing}/secret` }))).statusCode, 404)
  t.equal((await app.inject(as(admin.token, { method: 'DELETE', url: `/admin/clients/${client.client_id}` }))).statusCode, 204)
  t.equal((await app.inject(as(admin.token, { method: 'DELETE', url: `/admin/clients/${client.client_id}` }))).statusCode, 404, 'deleted once')
  const after = await app.inject(as(admin.token, { method: 'GET', url: '/admin/clients' }))
  t.notOk(after.json().some((c: { client_id: string }) => c.client_id === client.client_id), 'gone from the list')
  t.equal((await clientToken(app, { ...client, client_secret: newSecret })).statusCode, 401, 'a deleted client gets no token')
})

test('POST /auth/token client_credentials: when the client authenticates by Basic or client_secret_post, then a token for the client with no refresh token; a wrong secret is 401 invalid_client', async (t) => {
  const app = await build(t)
  const admin = await registerAdmin(app)
  const client = await createClient(app, admin.token, ['sessions:ended', 'users:read'])

  const byBasic = await clientToken(app, client)
  t.equal(byBasic.statusCode, 200)
  t.equal(byBasic.headers['cache-control'], 'no-store')
  const body = byBasic.json()
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'scope', 'token_type'], 'no refresh_token')
  t.match(body, { token_type: 'bearer', expires_in: 900, scope: 'sessions:ended users:read' })
  const claims = claimsOf(body.access_token)
  t.match(claims, { sub: client.client_id, client_id: client.client_id, sid: client.client_id, scope: 'sessions:ended users:read', iss: 'auth-service', aud: 'auth-service' })
  t.notOk('preferred_username' in claims || 'roles' in claims, 'no user claims')

  const byPost = await app.inject(formPost('/auth/token', { grant_type: 'client_credentials', client_id: client.client_id, client_secret: client.client_secret, scope: 'sessions:ended' }))
  t.equal(byPost.statusCode, 200, 'client_secret_post')
  t.equal(byPost.json().scope, 'sessions:ended', 'narrowed to what was asked')
  const byJson = await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'client_credentials', client_id: client.client_id, client_secret: client.client_secret } })
  t.equal(byJson.statusCode, 200, 'JSON works too')

  const tooMuch = await clientToken(app, client, { scope: 'users:write' })
  t.equal(tooMuch.statusCode, 400)
  t.same(tooMuch.json(), { error: 'invalid_scope', error_description: 'The client does not hold users:write' })

  const wrongBasic = await clientToken(app, { ...client, client_secret: 'not-the-secret' })
  t.equal(wrongBasic.statusCode, 401)
  t.same(wrongBasic.json(), INVALID_CLIENT)
  t.equal(wrongBasic.headers['www-authenticate'], BASIC_CHALLENGE, 'RFC 6749 section 5.2: the scheme the client used')
  const wrongPost = await app.inject(formPost('/auth/token', { grant_type: 'client_credentials', client_id: client.client_id, client_secret: 'nope' }))
  t.equal(wrongPost.statusCode, 401)
  t.same(wrongPost.json(), INVALID_CLIENT)
  const unknownClient = await clientToken(app, { client_id: '0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41', client_secret: client.client_secret })
  t.same([unknownClient.statusCode, unknownClient.json()], [401, INVALID_CLIENT], 'an unknown client looks like a wrong secret')
  const notUuid = await clientToken(app, { client_id: 'orders', client_secret: 'x' })
  t.same([notUuid.statusCode, notUuid.json()], [401, INVALID_CLIENT])
  const none = await app.inject(formPost('/auth/token', { grant_type: 'client_credentials' }))
  t.same([none.statusCode, none.json()], [401, INVALID_CLIENT], 'no client authentication')
  const both = await app.inject(formPost('/auth/token', { grant_type: 'client_credentials', client_secret: client.client_secret }, basic(client.client_id, client.client_secret)))
  t.equal(both.json().error, 'invalid_request', 'one authentication method per request')

  const user = await register(app)
  const pair = await app.inject(formPost('/auth/token', { username: user.username, password: user.password, client_id: 'swagger-ui' }, basic('swagger-ui', 'whatever')))
  t.equal(pair.statusCode, 200, 'the password grant still ignores client authentication')
})

test('client tokens: when a client token is used, then routes that need a scope take it and the user\'s own routes refuse it (401 invalid_token)', async (t) => {
  const app = await build(t)
  const admin = await registerAdmin(app)
  const token = await accessTokenOf(app, await createClient(app, admin.token, ['users:read']))
  const profile = await me(app, token)
  t.equal(profile.statusCode, 401)
  t.equal(profile.json().code, 'invalid_token')
  t.match(profile.headers['www-authenticate'], /^Bearer error="invalid_token"/)
  t.equal((await app.inject({ method: 'GET', url: '/users/me/sessions', headers: bearer(token) })).statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(token) })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/admin/users', headers: bearer(token) })).statusCode, 200, 'users:read is users:read, whoever holds it')
  t.equal((await app.inject({ method: 'GET', url: '/admin/roles', headers: bearer(token) })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/admin/clients', headers: bearer(token) })).statusCode, 403, 'clients:read is not held')
})

test('DELETE /admin/clients/{client_id}: when a client is deleted, then its token is refused within a second on another instance, and after a restart on the same database', async (t) => {
  const [a, b] = await twoInstances(t)
  const admin = await registerAdmin(a)
  const client = await createClient(a, admin.token, ['users:read'])
  const token = await accessTokenOf(a, client)
  const watcher = await createClient(a, admin.token, [], 'watcher')
  const call = async (app: FastifyInstance): Promise<number> => (await app.inject({ method: 'GET', url: '/admin/roles', headers: bearer(token) })).statusCode
  t.equal(await call(b), 200, 'valid on the other instance before')

  t.equal((await a.inject(as(admin.token, { method: 'DELETE', url: `/admin/clients/${client.client_id}` }))).statusCode, 204)
  t.equal(await call(a), 401, 'refused at once where it was deleted')
  await eventually(async () => await call(b) === 401, { timeoutMs: 1000 + TIMING_MARGIN_MS, what: 'instance b refusing the deleted client\'s token' })
  const refused = await b.inject({ method: 'GET', url: '/admin/roles', headers: bearer(token) })
  t.equal(refused.json().detail, 'Session has ended')
  t.same((await introspect(b, watcher, token)).json(), { active: false }, 'introspection agrees')

  // A restart: a new instance on the same database knows only what it re-reads there.
  const url = a.config.DATABASE_URL
  const restarted = await build(t, { DATABASE_URL: url }, url === undefined ? { database: await embeddedDatabase() } : {})
  t.equal(await call(restarted), 401, 'still refused after a restart')
  t.same((await introspect(restarted, watcher, token)).json(), { active: false })
})

test('POST /auth/introspect: when a registered client asks, then active with the claims for a live token and exactly {"active":false} for anything refused; without client authentication, 401', async (t) => {
  const app = await build(t)
  const admin = await registerAdmin(app)
  const client = await createClient(app, admin.token, ['sessions:ended'])
  const user = await register(app)
  const pair = await loginPair(app, user)

  const live = await introspect(app, client, pair.access)
  t.equal(live.statusCode, 200)
  t.equal(live.headers['cache-control'], 'no-store')
  const claims = claimsOf(pair.access)
  t.same(live.json(), {
    active: true,
    token_type: 'bearer',
    sub: user.id,
    username: user.username,
    sid: pair.sid,
    scope: '',
    exp: claims.exp,
    iat: claims.iat,
    iss: 'auth-service',
    aud: 'auth-service',
    jti: claims.jti
  })
  const own = await accessTokenOf(app, client)
  t.match((await introspect(app, client, own)).json(), { active: true, sub: client.client_id, client_id: client.client_id, sid: client.client_id, scope: 'sessions:ended' })
  t.notOk('username' in (await introspect(app, client, own)).json())
  const byPost = await app.inject({ method: 'POST', url: '/auth/introspect', payload: { token: own, client_id: client.client_id, client_secret: client.client_secret } })
  t.equal(byPost.json().active, true, 'JSON and client_secret_post')

  const now = Math.floor(Date.now() / 1000)
  const inactive: Array<[string, string]> = [
    ['malformed', 'not-a-token'],
    ['a refresh token', pair.refresh],
    ['expired', forgeToken(VALID_HEADER, { ...validClaims(user.id), iat: now - 1000, exp: now - 100 })],
    ['signed by another key', forgeToken(VALID_HEADER, validClaims(user.id), 'another-secret-0123456789abcdef0123456789')]
  ]
  const ended = await loginPair(app, user)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(ended.access) })).statusCode, 204)
  inactive.push(['of an ended session', ended.access])
  for (const [what, token] of inactive) {
    const res = await introspect(app, client, token)
    t.equal(res.statusCode, 200, what)
    t.same(res.json(), { active: false }, `${what}: exactly {"active":false}`)
  }

  const anonymous = await app.inject(formPost('/auth/introspect', { token: pair.access }))
  t.equal(anonymous.statusCode, 401)
  t.same(anonymous.json(), INVALID_CLIENT)
  t.equal(anonymous.headers['www-authenticate'], BASIC_CHALLENGE)
  const wrong = await introspect(app, { ...client, client_secret: 'wrong' }, pair.access)
  t.same([wrong.statusCode, wrong.json()], [401, INVALID_CLIENT])
  const withBearer = await app.inject(formPost('/auth/introspect', { token: pair.access }, bearer(pair.access)))
  t.equal(withBearer.statusCode, 401, 'a user\'s bearer token is not client authentication')
  const noToken = await app.inject(formPost('/auth/introspect', {}, basic(client.client_id, client.client_secret)))
  t.same([noToken.statusCode, noToken.json().error], [400, 'invalid_request'])
})

test('GET /.well-known/oauth-authorization-server: when fetched, then RFC 8414 metadata with absolute URLs from PUBLIC_URL', async (t) => {
  const app = await build(t, { PUBLIC_URL: 'https://auth.example.com/base/' })
  const res = await app.inject({ url: '/.well-known/oauth-authorization-server' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['cache-control'], /max-age=/)
  t.same(res.json(), {
    issuer: 'auth-service',
    token_endpoint: 'https://auth.example.com/base/auth/token',
    revocation_endpoint: 'https://auth.example.com/base/auth/revoke',
    introspection_endpoint: 'https://auth.example.com/base/auth/introspect',
    jwks_uri: 'https://auth.example.com/base/.well-known/jwks.json',
    grant_types_supported: ['password', 'refresh_token', 'client_credentials'],
    response_types_supported: [],
    scopes_supported: ['clients:read', 'clients:write', 'roles:write', 'sessions:ended', 'users:read', 'users:write'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    revocation_endpoint_auth_methods_supported: ['none'],
    ended_sessions_endpoint: 'https://auth.example.com/base/sessions/ended',
    ended_sessions_stream_endpoint: 'https://auth.example.com/base/sessions/ended/stream'
  })
})
