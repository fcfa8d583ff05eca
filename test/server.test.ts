import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { test } from 'tap'
import { sql } from 'drizzle-orm'
import { openDatabase } from '../src/db/client.js'
import { tempDir, testDatabaseUrl } from './helper.js'
import { MIGRATE, SERVER, start, stop } from './process.js'

test('npm start: when started with no configuration, then register -> token -> /users/me works over HTTP and survives a restart', async (t) => {
  const dataDir = await tempDir(t)
  const env = { DATA_DIR: dataDir, LOG_LEVEL: 'info' }
  const first = await start(env)
  t.teardown(async () => { await stop(first) })

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
  const me = await fetch(`${first.url}/users/me`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(me.status, 200)
  t.equal((await me.json() as { username: string }).username, 'first_user')
  t.equal(await stop(first), 0, 'SIGTERM ends the process cleanly')
  t.notMatch(first.output(), credentials.password, 'the password never reached the log')
  t.notMatch(first.output(), token.split('.')[2], 'the token never reached the log')

  const second = await start(env)
  t.teardown(async () => { await stop(second) })
  const again = await fetch(`${second.url}/users/me`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(again.status, 200, 'the generated secret was kept, so the old token still verifies')
  const relogin = await fetch(`${second.url}/auth/token`, {
    method: 'POST', body: new URLSearchParams({ username: credentials.email, password: credentials.password })
  })
  t.equal(relogin.status, 200, 'the user is still there after a restart')
})

test('npm start: when NODE_ENV=production lacks JWT_SECRET and DATABASE_URL, then it refuses to start and names both', async (t) => {
  const dataDir = await tempDir(t)
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER], {
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const [code] = await once(child, 'exit')
  t.equal(code, 1)
  t.match(output, /JWT_SECRET: is required when NODE_ENV=production, unless JWT_PRIVATE_KEY/)
  t.match(output, /DATABASE_URL: is required when NODE_ENV=production/)
})

test('npm start: when JWT_SECRET is a well-known value, then it refuses to start without echoing it', async (t) => {
  const dataDir = await tempDir(t)
  const secret = '09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7'
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER], {
    env: { PATH: process.env.PATH ?? '', JWT_SECRET: secret, DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const [code] = await once(child, 'exit')
  t.equal(code, 1)
  t.match(output, /JWT_SECRET: is a well-known or low-entropy value/)
  t.notMatch(output, secret)
})

test('npm run db:migrate: when run twice on a fresh database, then it applies the migrations and is idempotent', async (t) => {
  const dataDir = await tempDir(t)
  const databaseUrl = await testDatabaseUrl(t)
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', DATA_DIR: dataDir, ...(databaseUrl !== undefined ? { DATABASE_URL: databaseUrl } : {}) }
  for (let run = 1; run <= 2; run++) {
    const child = spawn(process.execPath, ['--import', 'tsx', MIGRATE], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    const [code] = await once(child, 'exit')
    t.equal(code, 0, `run ${run}: ${output}`)
    t.match(output, /migrations applied/)
  }
  const database = await openDatabase({ url: databaseUrl, dataDir })
  t.teardown(async () => { await database.close() })
  const result = await database.db.execute(sql`select to_regclass('public.users')::text as users_table`) as unknown
  const rows = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Array<{ users_table: string | null }>
  t.equal(rows[0].users_table, 'users', 'the users table exists')
})
