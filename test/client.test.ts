import { test } from 'tap'
import { sql } from 'drizzle-orm'
import createClient, { type Middleware } from 'openapi-fetch'
import type { paths } from './generated/openapi.js'
import { bearer, build, uniqueName } from './helper.js'
import { checkResponse } from './openapi-check.js'

/** Every answer the generated client receives over HTTP is also checked against the committed document. */
function checkedAgainstDocument (problems: string[]): Middleware {
  return {
    async onResponse ({ request, response }) {
      const problem = checkResponse({
        method: request.method,
        url: request.url,
        statusCode: response.status,
        contentType: response.headers.get('content-type') ?? undefined,
        body: await response.clone().text()
      })
      if (problem !== undefined) problems.push(problem)
      return response
    }
  }
}

test('generated client: when it runs register -> token -> /users/me -> refresh -> logout over HTTP, then each step answers as typed', async (t) => {
  const app = await build(t)
  const baseUrl = await app.listen({ host: '127.0.0.1', port: 0 })
  const problems: string[] = []
  const client = createClient<paths>({ baseUrl })
  client.use(checkedAgainstDocument(problems))

  const username = uniqueName('client')
  const password = 'correct horse battery staple'
  const registered = await client.POST('/auth/register', { body: { username, email: `${username}@example.com`, password } })
  t.equal(registered.response.status, 201)
  t.equal(registered.data?.username, username)

  // As OAuth2 client libraries do it: a form body.
  const login = await client.POST('/auth/token', {
    body: { grant_type: 'password', username, password },
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    bodySerializer: (body) => new URLSearchParams(body as Record<string, string>).toString()
  })
  t.equal(login.response.status, 200)
  if (login.data === undefined) throw new Error(`login failed: ${JSON.stringify(login.error)}`)
  const tokens: { access_token: string, refresh_token?: string, token_type: 'bearer', expires_in: number } = login.data
  t.equal(tokens.token_type, 'bearer')

  const me = await client.GET('/users/me', { headers: bearer(tokens.access_token) })
  t.equal(me.response.status, 200)
  t.equal(me.data?.id, registered.data?.id)

  const refreshed = await client.POST('/auth/token', { body: { grant_type: 'refresh_token', refresh_token: tokens.refresh_token } })
  t.equal(refreshed.response.status, 200)
  if (refreshed.data === undefined) throw new Error(`refresh failed: ${JSON.stringify(refreshed.error)}`)
  t.not(refreshed.data.refresh_token, tokens.refresh_token, 'a new refresh token')

  const sessions = await client.GET('/users/me/sessions', { headers: bearer(refreshed.data.access_token) })
  t.equal(sessions.data?.length, 1)
  t.equal(sessions.data?.[0].current, true)

  const logout = await client.POST('/auth/logout', { headers: bearer(refreshed.data.access_token) })
  t.equal(logout.response.status, 204)

  const after = await client.GET('/users/me', { headers: bearer(refreshed.data.access_token) })
  t.equal(after.response.status, 401)
  t.equal(after.error?.detail, 'Session has ended', 'the typed error body carries the problem detail')

  const reused = await client.POST('/auth/token', { body: { grant_type: 'refresh_token', refresh_token: refreshed.data.refresh_token } })
  t.equal(reused.response.status, 400)
  t.equal(reused.error?.error, 'invalid_grant')

  t.same(problems, [], 'every answer matched the document')
})

test('generated client: when an administrator creates, pages through, disables and deletes users with a scoped token, then each step answers as typed', async (t) => {
  const app = await build(t)
  const baseUrl = await app.listen({ host: '127.0.0.1', port: 0 })
  const problems: string[] = []
  const client = createClient<paths>({ baseUrl })
  client.use(checkedAgainstDocument(problems))

  const adminName = uniqueName('root')
  const password = 'correct horse battery staple'
  const root = await client.POST('/auth/register', { body: { username: adminName, email: `${adminName}@example.com`, password } })
  await app.database.db.execute(sql`insert into user_roles (user_id, role_name) values (${root.data?.id ?? ''}::uuid, 'admin')`)
  const login = await client.POST('/auth/token', { body: { username: adminName, password, scope: 'users:read users:write' } })
  if (login.data === undefined) throw new Error(`login failed: ${JSON.stringify(login.error)}`)
  t.equal(login.data.scope, 'users:read users:write')
  const headers = bearer(login.data.access_token)

  const prefix = uniqueName('typed').toLowerCase()
  for (const suffix of ['a', 'b', 'c']) {
    const created = await client.POST('/admin/users', { headers, body: { username: `${prefix}_${suffix}`, email: `${prefix}_${suffix}@example.com`, password } })
    t.equal(created.response.status, 201)
  }
  const pages: string[][] = []
  let cursor: string | undefined
  do {
    const page = await client.GET('/admin/users', { headers, params: { query: { q: prefix, limit: 2, ...(cursor !== undefined ? { cursor } : {}) } } })
    if (page.data === undefined) throw new Error(`list failed: ${JSON.stringify(page.error)}`)
    pages.push(page.data.items.map(u => u.username))
    cursor = page.data.next_cursor ?? undefined
  } while (cursor !== undefined && pages.length < 5)
  t.same(pages, [[`${prefix}_a`, `${prefix}_b`], [`${prefix}_c`]])

  const list = await client.GET('/admin/users', { headers, params: { query: { q: `${prefix}_b` } } })
  const id = list.data?.items[0].id ?? ''
  const disabled = await client.PATCH('/admin/users/{id}', { headers, params: { path: { id } }, body: { disabled: true } })
  t.equal(disabled.data?.disabled, true)
  const roles = await client.GET('/admin/roles', { headers })
  t.ok(roles.data?.some(r => r.name === 'admin' && r.built_in))
  const forbidden = await client.PUT('/admin/roles/{name}', { headers, params: { path: { name: 'clerk' } }, body: { description: '', scopes: [] } })
  t.equal(forbidden.response.status, 403, 'roles:write was not asked for')
  t.equal(forbidden.error?.code, 'insufficient_scope')
  const deleted = await client.DELETE('/admin/users/{id}', { headers, params: { path: { id } } })
  t.equal(deleted.response.status, 204)

  t.same(problems, [], 'every answer matched the document')
})
