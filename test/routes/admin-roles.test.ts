import { test } from 'tap'
import { as, assertSessionEnded, build, buildLogged, eventually, formPost, loginPair, me, refresh, register, registerAdmin, TIMING_MARGIN_MS, twoInstances, uniqueName } from '../helper.js'

test('PUT /admin/roles/{name}: when a role is created and granted, then its holders\' tokens carry its scopes; GET lists it with the built-in ones', async (t) => {
  const { app, entries } = await buildLogged(t)
  const root = await registerAdmin(app)
  const name = uniqueName('clerk')
  const created = await app.inject(as(root.token, { method: 'PUT', url: `/admin/roles/${name}`, payload: { description: 'Handles orders', scopes: ['orders:write', 'orders:read'] } }))
  t.equal(created.statusCode, 201)
  t.same(created.json(), { name, description: 'Handles orders', scopes: ['orders:read', 'orders:write'], built_in: false })
  const list = (await app.inject(as(root.token, { method: 'GET', url: '/admin/roles' }))).json() as Array<{ name: string, built_in: boolean, scopes: string[] }>
  t.match(list.find(r => r.name === 'admin'), { built_in: true, scopes: ['clients:read', 'clients:write', 'roles:write', 'users:read', 'users:write'] })
  t.match(list.find(r => r.name === 'user'), { built_in: true })
  t.ok(list.some(r => r.name === name))

  const clerk = await register(app)
  t.equal((await app.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${clerk.id}`, payload: { roles: [name] } }))).statusCode, 200)
  t.equal((await app.inject(formPost('/auth/token', { username: clerk.username, password: clerk.password, scope: 'orders:write' }))).json().scope, 'orders:write')
  t.match(entries().find(e => (e.audit as { event?: string } | undefined)?.event === 'admin_role_saved')?.audit, { user_id: root.id, role: name })
})

test('PUT /admin/roles/{name}: when a role loses a scope, then its holders\' sessions end on every instance within a second; adding one ends nothing', async (t) => {
  const [a, b] = await twoInstances(t)
  const root = await registerAdmin(a)
  const name = uniqueName('reader')
  await a.inject(as(root.token, { method: 'PUT', url: `/admin/roles/${name}`, payload: { description: '', scopes: ['reports:read'] } }))
  const holder = await register(a)
  await a.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${holder.id}`, payload: { roles: [name] } }))
  const session = await loginPair(a, holder)

  const widened = await a.inject(as(root.token, { method: 'PUT', url: `/admin/roles/${name}`, payload: { description: 'more', scopes: ['reports:read', 'reports:export'] } }))
  t.equal(widened.statusCode, 200)
  t.equal((await me(b, session.access)).statusCode, 200, 'a scope added ends nothing')
  t.equal((await refresh(a, session.refresh)).json().scope, 'reports:export reports:read', 'and shows at the next refresh')

  const current = await loginPair(a, holder)
  t.equal((await a.inject(as(root.token, { method: 'PUT', url: `/admin/roles/${name}`, payload: { description: 'less', scopes: ['reports:export'] } }))).statusCode, 200)
  assertSessionEnded(t, await me(a, current.access))
  await eventually(async () => (await me(b, current.access)).statusCode === 401, { timeoutMs: 1000 + TIMING_MARGIN_MS, what: 'the other instance refusing the holder\'s token' })
})

test('admin roles: when the admin role would lose its scopes or a built-in role be deleted, then 409; a custom role is deleted and its holders\' sessions end', async (t) => {
  const app = await build(t)
  const root = await registerAdmin(app)
  const shrink = await app.inject(as(root.token, { method: 'PUT', url: '/admin/roles/admin', payload: { description: 'x', scopes: ['users:read'] } }))
  t.equal(shrink.statusCode, 409)
  t.equal(shrink.json().code, 'admin_scopes')
  for (const builtIn of ['admin', 'user']) {
    const res = await app.inject(as(root.token, { method: 'DELETE', url: `/admin/roles/${builtIn}` }))
    t.equal(res.statusCode, 409, builtIn)
    t.equal(res.json().code, 'built_in_role')
  }
  const name = uniqueName('temp')
  await app.inject(as(root.token, { method: 'PUT', url: `/admin/roles/${name}`, payload: { description: '', scopes: ['temp:use'] } }))
  const holder = await register(app)
  await app.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${holder.id}`, payload: { roles: [name] } }))
  const session = await loginPair(app, holder)
  t.equal((await app.inject(as(root.token, { method: 'DELETE', url: `/admin/roles/${name}` }))).statusCode, 204)
  assertSessionEnded(t, await me(app, session.access))
  t.same((await app.inject(as(root.token, { method: 'GET', url: `/admin/users/${holder.id}` }))).json().roles, ['user'])
  t.equal((await app.inject(as(root.token, { method: 'DELETE', url: `/admin/roles/${name}` }))).statusCode, 404)
  const badScope = await app.inject(as(root.token, { method: 'PUT', url: `/admin/roles/${name}`, payload: { description: '', scopes: ['has space'] } }))
  t.equal(badScope.statusCode, 400)
  t.equal((await app.inject(as(root.token, { method: 'PUT', url: '/admin/roles/bad%20name', payload: { description: '', scopes: [] } }))).statusCode, 400)
  const usersReadOnly = (await app.inject(formPost('/auth/token', { username: root.username, password: root.password, scope: 'users:read users:write' }))).json().access_token
  t.equal((await app.inject(as(usersReadOnly, { method: 'PUT', url: `/admin/roles/${name}`, payload: { description: '', scopes: [] } }))).statusCode, 403, 'roles:write is its own scope')
})
