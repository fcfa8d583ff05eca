import { test } from 'tap'
import { sql } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import { createApp } from '../../src/app.js'
import { claimsOf, embeddedDatabase, formPost, grantRole, pairOf, refresh, register, testConfig, testDatabaseUrl, build, type Registered } from '../helper.js'

const token = (fields: Record<string, string>) => formPost('/auth/token', fields)
const ADMIN_SCOPE = 'clients:read clients:write roles:write users:read users:write'

async function admin (app: FastifyInstance): Promise<Registered> {
  const user = await register(app)
  await grantRole(app, user.id, 'admin')
  return user
}

test('POST /auth/token scope: when an admin logs in without a scope (or with an empty one), then the token carries every scope and role they hold', async (t) => {
  const app = await build(t)
  const user = await admin(app)
  for (const extra of [{}, { scope: '' }, { scope: '  ' }] as Array<Record<string, string>>) {
    const res = await app.inject(token({ username: user.username, password: user.password, ...extra }))
    t.equal(res.statusCode, 200, JSON.stringify(extra))
    t.equal(res.json().scope, ADMIN_SCOPE)
    const claims = claimsOf(res.json().access_token)
    t.equal(claims.scope, ADMIN_SCOPE)
    t.same(claims.roles, ['admin', 'user'])
  }
})

test('POST /auth/token scope: when a held subset is asked for, then the token carries just that, and a refresh keeps to it', async (t) => {
  const app = await build(t)
  const user = await admin(app)
  const res = await app.inject(token({ username: user.username, password: user.password, scope: 'users:read users:read' }))
  t.equal(res.statusCode, 200)
  t.equal(res.json().scope, 'users:read', 'repeats collapse')
  t.equal(claimsOf(res.json().access_token).scope, 'users:read')
  const refreshed = await refresh(app, pairOf(res).refresh)
  t.equal(refreshed.statusCode, 200)
  t.equal(refreshed.json().scope, 'users:read', 'the session keeps the scopes it was opened for')
})

test('POST /auth/token scope: when a scope the user does not hold is asked for, then 400 invalid_scope naming it; a malformed one, even before the password is checked', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const notHeld = await app.inject(token({ username: user.username, password: user.password, scope: 'users:read' }))
  t.equal(notHeld.statusCode, 400)
  t.same(notHeld.json(), { error: 'invalid_scope', error_description: 'The user does not hold users:read' })
  t.equal(notHeld.headers['cache-control'], 'no-store')
  for (const scope of ['a"b', 'back\\slash', 'tab\tseparated']) {
    const malformed = await app.inject(token({ username: user.username, password: 'wrong password', scope }))
    t.equal(malformed.statusCode, 400, scope)
    t.equal(malformed.json().error, 'invalid_scope')
  }
})

test('POST /auth/token refresh scope: when a refresh asks for more than the session holds, then 400 invalid_scope and the refresh token still works; a subset is granted', async (t) => {
  const app = await build(t)
  const user = await admin(app)
  const login = pairOf(await app.inject(token({ username: user.username, password: user.password, scope: 'users:read users:write' })))
  const more = await app.inject(token({ grant_type: 'refresh_token', refresh_token: login.refresh, scope: 'roles:write' }))
  t.equal(more.statusCode, 400)
  t.same(more.json(), { error: 'invalid_scope', error_description: 'The session does not hold roles:write' })
  const subset = await app.inject(token({ grant_type: 'refresh_token', refresh_token: login.refresh, scope: 'users:write' }))
  t.equal(subset.statusCode, 200, 'the refused refresh did not spend the token')
  t.equal(subset.json().scope, 'users:write')
  const next = await refresh(app, pairOf(subset).refresh)
  t.equal(next.json().scope, 'users:read users:write', 'a narrower refresh does not narrow the session')
})

test('POST /auth/token refresh scope: when a role is granted after login, then the next refresh carries its scopes (for a session opened without a scope)', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const login = pairOf(await app.inject(token({ username: user.username, password: user.password })))
  t.equal(claimsOf(login.access).scope, '')
  await app.database.db.execute(sql`insert into roles (name, description, scopes) values (${'orders_' + user.id.slice(0, 8)}, 'test', '{orders:write}')`)
  await grantRole(app, user.id, 'orders_' + user.id.slice(0, 8))
  const refreshed = await refresh(app, login.refresh)
  t.equal(refreshed.json().scope, 'orders:write')
  t.same(claimsOf(refreshed.json().access_token).roles, ['orders_' + user.id.slice(0, 8), 'user'].sort())
})

test('POST /auth/token: when the account is disabled, then the right password hears "Account is disabled" and a wrong one the usual answer', async (t) => {
  const app = await build(t)
  const user = await register(app)
  await app.database.db.execute(sql`update users set disabled_at = now() where id = ${user.id}::uuid`)
  const right = await app.inject(token({ username: user.username, password: user.password }))
  t.equal(right.statusCode, 401)
  t.same(right.json(), { error: 'invalid_grant', error_description: 'Account is disabled' })
  const wrong = await app.inject(token({ username: user.username, password: 'not the password' }))
  t.equal(wrong.statusCode, 401)
  t.same(wrong.json(), { error: 'invalid_grant', error_description: 'Incorrect username or password' })
})

test('config.scopes: when a protected route names scopes, then a token without them gets 403 insufficient_scope with the RFC 6750 challenge, one with them passes, and the document lists them', async (t) => {
  const url = await testDatabaseUrl(t)
  const app = createApp(testConfig({ DATABASE_URL: url }), url === undefined ? { database: await embeddedDatabase() } : {})
  t.teardown(async () => { await app.close() })
  app.register(async (child) => {
    const { requireAuthentication } = await import('../../src/plugins/auth.js')
    requireAuthentication(child)
    child.get('/probe/scoped', { config: { scopes: ['users:read', 'users:write'] }, schema: { summary: 'probe' } }, async () => ({ ok: true }))
  })
  await app.ready()
  const user = await admin(app)
  const bearerFor = async (scope: string): Promise<string> =>
    `Bearer ${pairOf(await app.inject(token({ username: user.username, password: user.password, scope }))).access}`

  const refused = await app.inject({ method: 'GET', url: '/probe/scoped', headers: { authorization: await bearerFor('users:read') } })
  t.equal(refused.statusCode, 403)
  t.equal(refused.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="users:read users:write"')
  t.match(refused.json(), { status: 403, code: 'insufficient_scope', detail: 'This operation needs the scope users:read users:write' })
  t.equal(refused.headers['content-type'], 'application/problem+json; charset=utf-8')

  const allowed = await app.inject({ method: 'GET', url: '/probe/scoped', headers: { authorization: await bearerFor('users:read users:write') } })
  t.equal(allowed.statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/probe/scoped' })).statusCode, 401, 'no token: 401 before any scope check')

  const operation = (app.swagger() as { paths: Record<string, { get: { security: unknown } }> }).paths['/probe/scoped'].get
  t.same(operation.security, [{ OAuth2PasswordBearer: ['users:read', 'users:write'] }])
})
