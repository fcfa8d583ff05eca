import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { loggerOptions } from '../src/logger.js'
import { build, uniqueName } from './helper.js'

// Distinctive enough that finding it anywhere in a log can only mean it leaked.
const PASSWORD = 'Quokka7731-Zebra-Tangerine'
const CLIENT_SECRET = 'Client5ecret-Marmalade-4410'

interface Captured {
  app: FastifyInstance
  lines: string[]
}

/** The whole service at trace level, its log lines kept in memory. */
async function buildLogged (t: Parameters<typeof build>[0]): Promise<Captured> {
  const lines: string[] = []
  const stream = { write (line: string) { lines.push(line) } }
  const app = await build(t, { LOG_LEVEL: 'trace' }, { logger: { ...loggerOptions({ LOG_LEVEL: 'trace' }), stream } })
  return { app, lines }
}

const parsed = (lines: string[]): Array<Record<string, unknown>> => lines.map(line => JSON.parse(line))

test('logs: when a user registers, logs in by form and JSON and calls /users/me at trace level, then no line holds the password or the token', async (t) => {
  const { app, lines } = await buildLogged(t)
  const username = uniqueName('logged')

  const registered = await app.inject({ method: 'POST', url: '/auth/register', payload: { username, email: `${username}@example.com`, password: PASSWORD } })
  t.equal(registered.statusCode, 201)
  const byForm = await app.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'password', username, password: PASSWORD }).toString()
  })
  t.equal(byForm.statusCode, 200)
  const byJson = await app.inject({ method: 'POST', url: '/auth/token', payload: { username, password: PASSWORD } })
  t.equal(byJson.statusCode, 200)
  const token: string = byJson.json().access_token
  const formToken: string = byForm.json().access_token
  const signature = token.split('.')[2]
  t.equal(signature.length > 20, true, 'the token has a signature to look for')

  const withHeader = await app.inject({ method: 'GET', url: '/users/me', headers: { authorization: `Bearer ${token}` } })
  t.equal(withHeader.statusCode, 200)
  const inQuery = await app.inject({ method: 'GET', url: `/users/me?access_token=${token}` })
  for (const name of ['access%5Ftoken', '%61ccess_token', 'access_token[]', 'x=1;access_token']) {
    await app.inject({ method: 'GET', url: `/users/me?${name}=${token}` })
  }
  t.equal(inQuery.statusCode, 401, 'a token in the query string is not accepted')

  const log = lines.join('')
  t.ok(lines.length > 0, 'something was logged')
  const entries = parsed(lines)
  t.ok(entries.some(e => e.msg === 'incoming request'), 'an "incoming request" line was logged')
  t.ok(entries.some(e => String((e.req as { url?: string } | undefined)?.url ?? '').startsWith('/users/me')), 'the /users/me request was logged with its url')
  t.match(log, '/users/me?[REDACTED]', 'the query string was logged redacted')
  t.notMatch(log, PASSWORD, 'the password is not in the logs')
  t.notMatch(log, token, 'the access token is not in the logs')
  t.notMatch(log, formToken, 'the token from the form login is not in the logs')
  t.notMatch(log, signature, 'the token signature is not in the logs')
  t.notMatch(log, formToken.split('.')[2], 'the form token signature is not in the logs')
})

test('logs: when requests fail (malformed JSON holding the password, a wrong password, Basic client credentials), then no line holds the credentials', async (t) => {
  const { app, lines } = await buildLogged(t)
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
  const withBasic = await app.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'password', username, password: PASSWORD }).toString()
  })
  t.equal(withBasic.statusCode, 200, 'Basic client authentication is accepted and ignored')
  const token: string = withBasic.json().access_token

  const log = lines.join('')
  t.ok(lines.length > 0, 'something was logged')
  const entries = parsed(lines)
  t.ok(entries.filter(e => e.msg === 'incoming request').length >= 5, 'every request was logged as incoming')
  t.ok(entries.some(e => e.msg === 'request refused'), 'the malformed register body was logged as refused')
  t.notMatch(log, PASSWORD, 'the password (and the wrong one, which contains it) is not in the logs')
  t.notMatch(log, CLIENT_SECRET, 'the Basic client secret is not in the logs')
  t.notMatch(log, basic, 'the Basic credentials are not in the logs')
  t.notMatch(log, token, 'the access token is not in the logs')
  t.notMatch(log, token.split('.')[2], 'the token signature is not in the logs')
})
