import { test } from 'tap'
import { bearer, runToExit, spawnServer, startServer, stopServer, tempDir } from './helper.js'

test('npm start: when started with no configuration, then register -> token -> /users/me works over HTTP and survives a restart', async (t) => {
  const dataDir = await tempDir(t)
  const env = { DATA_DIR: dataDir, LOG_LEVEL: 'info' }
  const first = await startServer(env)
  t.teardown(async () => { await stopServer(first) })

  const credentials = { username: 'first_user', email: 'first@example.com', password: 'correct horse battery' }
  const registered = await fetch(`${first.url}/auth/register`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(credentials)
  })
  t.equal(registered.status, 201)
  const tokenRes = await fetch(`${first.url}/auth/token`, {
    method: 'POST', body: new URLSearchParams({ username: credentials.username, password: credentials.password })
  })
  t.equal(tokenRes.status, 200)
  const { access_token: token } = await tokenRes.json() as { access_token: string }
  const me = await fetch(`${first.url}/users/me`, { headers: bearer(token) })
  t.equal(me.status, 200)
  t.equal((await me.json() as { username: string }).username, 'first_user')
  t.equal(await stopServer(first), 0, 'SIGTERM ends the process cleanly')
  t.notMatch(first.output(), credentials.password, 'the password never reached the log')
  t.notMatch(first.output(), token.split('.')[2], 'the token never reached the log')

  const second = await startServer(env)
  t.teardown(async () => { await stopServer(second) })
  const again = await fetch(`${second.url}/users/me`, { headers: bearer(token) })
  t.equal(again.status, 200, 'the generated secret was kept, so the old token still verifies')
  const relogin = await fetch(`${second.url}/auth/token`, {
    method: 'POST', body: new URLSearchParams({ username: credentials.email, password: credentials.password })
  })
  t.equal(relogin.status, 200, 'the user is still there after a restart')
})

test('npm start: when NODE_ENV=production lacks JWT_SECRET and DATABASE_URL, then it refuses to start and names both', async (t) => {
  const dataDir = await tempDir(t)
  const { code, output } = await runToExit(spawnServer({ NODE_ENV: 'production', DATA_DIR: dataDir }))
  t.equal(code, 1)
  t.match(output, /JWT_SECRET: is required when NODE_ENV=production, unless JWT_PRIVATE_KEY/)
  t.match(output, /DATABASE_URL: is required when NODE_ENV=production/)
})

test('npm start: when JWT_SECRET is a well-known value, then it refuses to start without echoing it', async (t) => {
  const dataDir = await tempDir(t)
  const secret = '09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7'
  const { code, output } = await runToExit(spawnServer({ JWT_SECRET: secret, DATA_DIR: dataDir }))
  t.equal(code, 1)
  t.match(output, /JWT_SECRET: is a well-known or low-entropy value/)
  t.notMatch(output, secret)
})
