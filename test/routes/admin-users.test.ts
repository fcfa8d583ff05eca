import { test } from 'tap'
import { sql } from 'drizzle-orm'
import type { InjectOptions } from 'fastify'
import {
  as, assertSessionEnded, bearer, build, buildLogged, eventually, formPost, loginPair, me, refresh, register,
  registerAdmin, TIMING_MARGIN_MS, twoInstances, uniqueName
} from '../helper.js'

test('admin: when a token lacks the scope, then 403 insufficient_scope; with it, the operation answers', async (t) => {
  const app = await build(t)
  const root = await registerAdmin(app)
  const plain = await register(app)
  const plainToken = (await loginPair(app, plain)).access
  const refused = await app.inject(as(plainToken, { method: 'GET', url: '/admin/users' }))
  t.equal(refused.statusCode, 403)
  t.equal(refused.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="users:read"')
  t.equal(refused.json().code, 'insufficient_scope')
  const readOnly = (await app.inject(formPost('/auth/token', { username: root.username, password: root.password, scope: 'users:read' }))).json().access_token
  t.equal((await app.inject(as(readOnly, { method: 'GET', url: `/admin/users/${plain.id}` }))).statusCode, 200)
  t.equal((await app.inject(as(readOnly, { method: 'PATCH', url: `/admin/users/${plain.id}`, payload: { disabled: true } }))).statusCode, 403, 'users:write is another scope')
  t.equal((await app.inject({ method: 'GET', url: '/admin/users' })).statusCode, 401)
})

test('GET /admin/users: when paged with limit and cursor, then every match comes once, in username order; q matches the start of username or email', async (t) => {
  const app = await build(t)
  const root = await registerAdmin(app)
  const prefix = uniqueName('pg').toLowerCase()
  const names = ['c', 'A', 'b', 'E', 'd'].map(s => `${prefix}_${s}`)
  for (const username of names) await register(app, { username })
  await register(app, { username: uniqueName('other'), email: `${prefix}_mail@example.com` })

  const seen: string[] = []
  let cursor: string | null = null
  for (let pages = 0; pages < 10; pages++) {
    const query: Record<string, string> = { q: prefix.toUpperCase(), limit: '2', ...(cursor !== null ? { cursor } : {}) }
    const res = await app.inject(as(root.token, { method: 'GET', url: '/admin/users', query }))
    t.equal(res.statusCode, 200)
    const page = res.json()
    t.ok(page.items.length <= 2)
    seen.push(...page.items.map((u: { username: string }) => u.username))
    cursor = page.next_cursor
    if (cursor === null) break
  }
  t.equal(seen.length, 6, 'five by username, one by email')
  t.same(seen.filter(n => n.startsWith(prefix)), [...names].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase())))
  for (const wildcard of ['%', '_', `${prefix.slice(0, 2)}%`]) {
    const res = await app.inject(as(root.token, { method: 'GET', url: '/admin/users', query: { q: wildcard } }))
    t.same(res.json().items, [], `q=${wildcard}: LIKE's wildcards are literal`)
  }
  const bad = await app.inject(as(root.token, { method: 'GET', url: '/admin/users', query: { cursor: '!!' } }))
  t.equal(bad.statusCode, 400)
  for (const limit of ['0', '101', 'ten']) {
    const res = await app.inject(as(root.token, { method: 'GET', url: '/admin/users', query: { limit } }))
    t.equal(res.statusCode, 400, `limit=${limit}`)
    t.equal(res.json().errors[0].field, 'limit')
  }
  const item = (await app.inject(as(root.token, { method: 'GET', url: `/admin/users/${root.id}` }))).json()
  t.same(item.roles, ['admin', 'user'])
  t.equal(item.disabled, false)
  t.equal((await app.inject(as(root.token, { method: 'GET', url: '/admin/users/00000000-0000-4000-8000-000000000000' }))).statusCode, 404)
})

test('POST /admin/users: when created with roles, then the user logs in with them; a taken name is 409, an unknown role 400, a weak password 400', async (t) => {
  const app = await build(t)
  const root = await registerAdmin(app)
  const username = uniqueName('made')
  const body = { username, email: `${username}@example.com`, password: 'made by an admin, long', roles: ['admin'] }
  const created = await app.inject(as(root.token, { method: 'POST', url: '/admin/users', payload: body }))
  t.equal(created.statusCode, 201)
  t.match(created.json(), { username, roles: ['admin', 'user'], disabled: false })
  t.equal((await app.inject(formPost('/auth/token', { username, password: body.password }))).json().scope, 'clients:read clients:write roles:write users:read users:write')
  t.equal((await app.inject(as(root.token, { method: 'POST', url: '/admin/users', payload: body }))).statusCode, 409)
  const unknownRole = await app.inject(as(root.token, { method: 'POST', url: '/admin/users', payload: { ...body, username: uniqueName('x'), email: 'x1@example.com', roles: ['wizard'] } }))
  t.equal(unknownRole.statusCode, 400)
  t.match(unknownRole.json().errors, [{ field: 'roles', message: 'no role named wizard' }])
  t.equal((await app.inject(as(root.token, { method: 'POST', url: '/admin/users', payload: { ...body, username: uniqueName('y'), email: 'y1@example.com', password: 'short' } }))).statusCode, 400)
})

test('PATCH /admin/users/{id}: when a user is disabled, then their tokens are refused on another instance within a second and the right password hears "Account is disabled"; enabled again, they log in', async (t) => {
  const [a, b] = await twoInstances(t)
  const root = await registerAdmin(a)
  const target = await register(a)
  const session = await loginPair(a, target)
  t.equal((await me(b, session.access)).statusCode, 200)
  const res = await a.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${target.id}`, payload: { disabled: true } }))
  t.equal(res.statusCode, 200)
  t.equal(res.json().disabled, true)
  assertSessionEnded(t, await me(a, session.access), 'at once on the instance that disabled')
  // The bound is the behaviour: refused within a second, plus the margin a busy machine needs.
  await eventually(async () => (await me(b, session.access)).statusCode === 401, { timeoutMs: 1000 + TIMING_MARGIN_MS, what: 'the other instance refusing the token' })
  t.equal((await refresh(b, session.refresh)).statusCode, 400, 'the refresh token is dead too')
  t.same((await b.inject(formPost('/auth/token', { username: target.username, password: target.password }))).json(),
    { error: 'invalid_grant', error_description: 'Account is disabled' })
  t.equal((await a.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${target.id}`, payload: { disabled: false } }))).statusCode, 200)
  t.equal((await b.inject(formPost('/auth/token', { username: target.username, password: target.password }))).statusCode, 200)
})

test('PATCH /admin/users/{id}: when a role is taken away, then the user\'s sessions end; a role granted shows at the next refresh; the email changes, a taken one is 409', async (t) => {
  const app = await build(t)
  const root = await registerAdmin(app)
  const other = await registerAdmin(app)
  const before = await loginPair(app, other)
  const demoted = await app.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${other.id}`, payload: { roles: [] } }))
  t.equal(demoted.statusCode, 200)
  t.same(demoted.json().roles, ['user'], 'the user role stays')
  assertSessionEnded(t, await me(app, before.access))

  const fresh = await loginPair(app, other)
  t.equal((await app.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${other.id}`, payload: { roles: ['admin'] } }))).statusCode, 200)
  t.equal((await me(app, fresh.access)).statusCode, 200, 'a grant ends nothing')
  t.equal((await refresh(app, fresh.refresh)).json().scope, 'clients:read clients:write roles:write users:read users:write')

  const email = `${uniqueName('new')}@example.com`
  t.equal((await app.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${other.id}`, payload: { email } }))).json().email, email)
  t.equal((await app.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${other.id}`, payload: { email: root.email.toUpperCase() } }))).statusCode, 409)
  t.equal((await app.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${other.id}`, payload: {} }))).statusCode, 400, 'nothing to change')
})

test('admin: when the last administrator would be demoted, disabled or deleted, then 409 last_admin', async (t) => {
  const app = await build(t)
  // The embedded database is shared by this file's tests: leave one administrator.
  await app.database.db.execute(sql`delete from user_roles where role_name = 'admin'`)
  const root = await registerAdmin(app)
  for (const options of [
    { method: 'PATCH', url: `/admin/users/${root.id}`, payload: { roles: ['user'] } },
    { method: 'PATCH', url: `/admin/users/${root.id}`, payload: { disabled: true } },
    { method: 'DELETE', url: `/admin/users/${root.id}` }
  ] as InjectOptions[]) {
    const res = await app.inject(as(root.token, options))
    t.equal(res.statusCode, 409, `${options.method} ${JSON.stringify(options.payload ?? {})}`)
    t.equal(res.json().code, 'last_admin')
  }
  t.equal((await me(app, root.token)).statusCode, 200, 'and nothing happened to them')
})

test('admin: when two administrators demote each other at the same moment, then one wins and one administrator remains', async (t) => {
  const [a, b] = await twoInstances(t)
  await a.database.db.execute(sql`delete from user_roles where role_name = 'admin'`)
  const first = await registerAdmin(a)
  const second = await registerAdmin(a)
  for (let round = 0; round < 3; round++) {
    const results = await Promise.all([
      a.inject(as(first.token, { method: 'PATCH', url: `/admin/users/${second.id}`, payload: { roles: [] } })),
      b.inject(as(second.token, { method: 'PATCH', url: `/admin/users/${first.id}`, payload: { roles: [] } }))
    ])
    const statuses = results.map(r => r.statusCode).sort()
    const admins = await a.database.db.execute(sql`select count(*)::int as n from user_roles where role_name = 'admin'`)
    const count = (Array.isArray(admins) ? admins : (admins as { rows: Array<{ n: number }> }).rows)[0].n
    t.equal(count, 1, `round ${round}: one administrator remains (${statuses.join(', ')})`)
    t.ok(statuses.includes(409), 'the other change was refused')
    // Restore both for the next round; the survivor's token still works.
    const survivor = results[0].statusCode === 200 ? first : second
    const loser = survivor === first ? second : first
    t.equal((await a.inject(as(survivor.token, { method: 'PATCH', url: `/admin/users/${loser.id}`, payload: { roles: ['admin'] } }))).statusCode, 200)
    loser.token = (await loginPair(a, loser)).access
  }
})

test('DELETE /admin/users/{id}: when a user is deleted, then their tokens are refused on another instance within a second and the user is gone', async (t) => {
  const [a, b] = await twoInstances(t)
  const root = await registerAdmin(a)
  const target = await register(a)
  const session = await loginPair(a, target)
  t.equal((await a.inject(as(root.token, { method: 'DELETE', url: `/admin/users/${target.id}` }))).statusCode, 204)
  await eventually(async () => (await b.inject({ method: 'POST', url: '/auth/logout', headers: bearer(session.access) })).statusCode === 401,
    { timeoutMs: 1000 + TIMING_MARGIN_MS, what: 'the other instance refusing the deleted user\'s token' })
  t.equal((await a.inject(as(root.token, { method: 'GET', url: `/admin/users/${target.id}` }))).statusCode, 404)
  t.equal((await a.inject(as(root.token, { method: 'DELETE', url: `/admin/users/${target.id}` }))).statusCode, 404)
})

test('admin sessions: when listed and ended by an administrator, then the user\'s sessions show and then end, with an audit event naming both', async (t) => {
  const { app, entries } = await buildLogged(t)
  const root = await registerAdmin(app)
  const target = await register(app)
  const session = await loginPair(app, target)
  const list = await app.inject(as(root.token, { method: 'GET', url: `/admin/users/${target.id}/sessions` }))
  t.equal(list.statusCode, 200)
  t.equal(list.json().length, 1)
  t.equal(list.json()[0].current, false)
  t.equal((await app.inject(as(root.token, { method: 'DELETE', url: `/admin/users/${target.id}/sessions` }))).statusCode, 204)
  assertSessionEnded(t, await me(app, session.access))
  t.same((await app.inject(as(root.token, { method: 'GET', url: `/admin/users/${target.id}/sessions` }))).json(), [])
  const event = entries().find(e => (e.audit as { event?: string } | undefined)?.event === 'admin_sessions_ended')
  t.match(event?.audit, { user_id: root.id, target_user_id: target.id, sessions_ended: 1 })
})
