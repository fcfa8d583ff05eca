import { test } from 'tap'
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
  const tokens: { access_token: string, refresh_token: string, token_type: 'bearer', expires_in: number } = login.data
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
