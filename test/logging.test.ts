import { test } from 'tap'
import { sql } from 'drizzle-orm'
import { bearer, buildLogged, formPost, register, uniqueName } from './helper.js'

// Distinctive enough that finding it anywhere in a log can only mean it leaked.
const PASSWORD = 'Quokka7731-Zebra-Tangerine'
const CLIENT_SECRET = 'Client5ecret-Marmalade-4410'

test('logs: when a user registers, logs in by form and JSON and calls /users/me at trace level, then no line holds the password or the token', async (t) => {
  const { app, lines, entries } = await buildLogged(t, { LOG_LEVEL: 'trace' })
  const username = uniqueName('logged')

  const registered = await app.inject({ method: 'POST', url: '/auth/register', payload: { username, email: `${username}@example.com`, password: PASSWORD } })
  t.equal(registered.statusCode, 201)
  const byForm = await app.inject(formPost('/auth/token', { grant_type: 'password', username, password: PASSWORD }))
  t.equal(byForm.statusCode, 200)
  const byJson = await app.inject({ method: 'POST', url: '/auth/token', payload: { username, password: PASSWORD } })
  t.equal(byJson.statusCode, 200)
  const token: string = byJson.json().access_token
  const formToken: string = byForm.json().access_token
  const signature = token.split('.')[2]
  t.equal(signature.length > 20, true, 'the token has a signature to look for')

  const withHeader = await app.inject({ method: 'GET', url: '/users/me', headers: bearer(token) })
  t.equal(withHeader.statusCode, 200)
  const inQuery = await app.inject({ method: 'GET', url: `/users/me?access_token=${token}` })
  for (const name of ['access%5Ftoken', '%61ccess_token', 'access_token[]', 'x=1;access_token']) {
    await app.inject({ method: 'GET', url: `/users/me?${name}=${token}` })
  }
  t.equal(inQuery.statusCode, 401, 'a token in the query string is not accepted')

  const log = lines.join('')
  t.ok(lines.length > 0, 'something was logged')
  t.ok(entries().some(e => e.msg === 'incoming request'), 'an "incoming request" line was logged')
  t.ok(entries().some(e => String((e.req as { url?: string } | undefined)?.url ?? '').startsWith('/users/me')), 'the /users/me request was logged with its url')
  t.match(log, '/users/me?[REDACTED]', 'the query string was logged redacted')
  t.notMatch(log, PASSWORD, 'the password is not in the logs')
  t.notMatch(log, token, 'the access token is not in the logs')
  t.notMatch(log, formToken, 'the token from the form login is not in the logs')
  t.notMatch(log, signature, 'the token signature is not in the logs')
  t.notMatch(log, formToken.split('.')[2], 'the form token signature is not in the logs')
})

test('logs: when requests fail (malformed JSON holding the password, a wrong password, Basic client credentials), then no line holds the credentials', async (t) => {
  const { app, lines, entries } = await buildLogged(t, { LOG_LEVEL: 'trace' })
  const username = uniqueName('logged')
  const registered = await app.inject({ method: 'POST', url: '/auth/register', payload: { username, email: `${username}@example.com`, password: PASSWORD } })
  t.equal(registered.statusCode, 201)

  const malformed = `{"username": "${username}", "password": "${PASSWORD}", x`
  const badRegister = await app.inject({ method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload: malformed })
  t.equal(badRegister.statusCode, 400)
  t.notMatch(badRegister.body, PASSWORD, 'the register error does not echo the password')
  const badToken = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'content-type': 'application/json' }, payload: malformed })
  t.equal(badToken.statusCode, 400)
  t.notMatch(badToken.body, PASSWORD, 'the token error does not echo the password')

  const wrongPassword = PASSWORD + '-wrong'
  const wrong = await app.inject({ method: 'POST', url: '/auth/token', payload: { username, password: wrongPassword } })
  t.equal(wrong.statusCode, 401)

  const basic = Buffer.from(`my-client:${CLIENT_SECRET}`).toString('base64')
  const withBasic = await app.inject(formPost('/auth/token', { grant_type: 'password', username, password: PASSWORD }, { authorization: `Basic ${basic}` }))
  t.equal(withBasic.statusCode, 200, 'Basic client authentication is accepted and ignored')
  const token: string = withBasic.json().access_token

  const log = lines.join('')
  t.ok(lines.length > 0, 'something was logged')
  t.ok(entries().filter(e => e.msg === 'incoming request').length >= 5, 'every request was logged as incoming')
  t.ok(entries().some(e => e.msg === 'request refused'), 'the malformed register body was logged as refused')
  t.notMatch(log, PASSWORD, 'the password (and the wrong one, which contains it) is not in the logs')
  t.notMatch(log, CLIENT_SECRET, 'the Basic client secret is not in the logs')
  t.notMatch(log, basic, 'the Basic credentials are not in the logs')
  t.notMatch(log, token, 'the access token is not in the logs')
  t.notMatch(log, token.split('.')[2], 'the token signature is not in the logs')
})

test('X-Request-Id: when a caller sends a sane one, then the answer and the log lines carry it; when not, then a fresh id', async (t) => {
  const { app, entries } = await buildLogged(t)
  const kept = await app.inject({ url: '/health/live', headers: { 'x-request-id': 'trace-abc.123' } })
  t.equal(kept.headers['x-request-id'], 'trace-abc.123')
  t.ok(entries().some(l => l.request_id === 'trace-abc.123'), 'logged as request_id')

  for (const bad of ['has space', 'x'.repeat(200), '"quoted"<tag>', '']) {
    const res = await app.inject({ url: '/health/live', headers: { 'x-request-id': bad } })
    t.match(res.headers['x-request-id'], /^[0-9a-f]{12}-[0-9a-z]+$/, `${JSON.stringify(bad.slice(0, 20))} replaced`)
  }
  const none = await app.inject({ url: '/health/live' })
  const again = await app.inject({ url: '/health/live' })
  t.match(none.headers['x-request-id'], /^[0-9a-f]{12}-[0-9a-z]+$/)
  t.not(none.headers['x-request-id'], again.headers['x-request-id'], 'a new id for each request')
  const problem = await app.inject({ url: '/users/me', headers: { 'x-request-id': 'on-errors-too' } })
  t.equal(problem.statusCode, 401)
  t.equal(problem.headers['x-request-id'], 'on-errors-too')
})

test('audit trail: when users register, log in, fail, refresh, reuse, revoke and log out, then one structured line per security event', async (t) => {
  const { app, entries } = await buildLogged(t, { REFRESH_REUSE_GRACE_SECONDS: 0 })
  const user = await register(app, { password: PASSWORD })
  const token = async (payload: Record<string, string>, requestId: string): Promise<Record<string, string>> =>
    (await app.inject({ method: 'POST', url: '/auth/token', payload, headers: { 'x-request-id': requestId } })).json()
  const first = await token({ username: user.username, password: PASSWORD }, 'audit-login')
  await token({ username: user.username, password: 'not the password' }, 'audit-fail')
  await token({ username: PASSWORD, password: 'not the password' }, 'audit-fail-unknown')
  const second = await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token }, 'audit-refresh')
  await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token }, 'audit-reuse')
  const third = await token({ username: user.username, password: PASSWORD }, 'audit-login-2')
  await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: third.refresh_token } })
  const fourth = await token({ username: user.username, password: PASSWORD }, 'audit-login-3')
  await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(fourth.access_token) })
  t.ok(second.access_token, 'the refresh succeeded')

  const events = entries().filter(l => l.audit !== undefined) as Array<{ audit: Record<string, unknown>, request_id: string }>
  const byEvent = (name: string) => events.filter(e => e.audit.event === name)
  t.same(byEvent('user_registered').map(e => e.audit.user_id), [user.id])
  t.same(byEvent('login_succeeded').map(e => e.request_id), ['audit-login', 'audit-login-2', 'audit-login-3'])
  t.same(byEvent('login_failed').map(e => [e.audit.reason, e.audit.user_id]), [['wrong_password', user.id], ['unknown_user', undefined]])
  t.equal(byEvent('token_refreshed').length, 1)
  t.equal(byEvent('refresh_token_reuse').length, 1)
  t.equal(byEvent('refresh_token_reuse')[0].request_id, 'audit-reuse')
  t.equal(byEvent('token_revoked').length, 1)
  t.equal(byEvent('logout').length, 1)
  t.ok(events.every(e => e.audit.ip === '127.0.0.1'), 'each carries the client address')
  t.notOk(entries().some(l => JSON.stringify(l).includes(PASSWORD)), 'no password (nor a password typed as a username) in any line')
})

test('logs: when a database query fails, then the error is logged with its cause but without the query\'s parameters (the hash, the email)', async (t) => {
  const { app, lines } = await buildLogged(t)
  const username = uniqueName('boom')
  // A real refusal from the database, for this test's usernames only (the embedded database is shared by the file).
  await app.database.db.execute(sql.raw(`create or replace function refuse_boom() returns trigger language plpgsql as $$
    begin if new.username like 'boom%' then raise exception 'refused by the test trigger'; end if; return new; end $$`))
  await app.database.db.execute(sql.raw('create trigger refuse_boom before insert on users for each row execute function refuse_boom()'))
  t.teardown(async () => { await app.database.db.execute(sql.raw('drop trigger if exists refuse_boom on users')).catch(() => {}) })

  const email = `${username}@leak-check.example`
  const res = await app.inject({ method: 'POST', url: '/auth/register', payload: { username, email, password: PASSWORD } })
  t.equal(res.statusCode, 500)
  const log = lines.join('\n')
  t.match(log, /refused by the test trigger/, 'the cause is logged')
  t.match(log, /Failed query/, 'and what failed')
  for (const secret of ['$argon2id$', email, PASSWORD]) t.notOk(log.includes(secret), `no ${secret.slice(0, 12)} in the log`)
})
