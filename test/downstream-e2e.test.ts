import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'tap'
import {
  bearer, eventually, REPO_ROOT, startServer, stopServer, tempDir, testDatabaseUrl, TIMING_MARGIN_MS, uniqueName, untilListening, type Running
} from './helper.js'

const EXAMPLE = join(REPO_ROOT, 'examples', 'downstream', 'server.ts')
const ADMIN_PASSWORD = 'correct horse battery staple'

/** The example downstream service as `npm run example:downstream` runs it, waiting until it listens. */
async function startExample (env: Record<string, string>): Promise<Running> {
  const child = spawn(process.execPath, ['--import', 'tsx', EXAMPLE], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  return await untilListening(child, 'the example')
}

async function synced (example: Running): Promise<void> {
  await eventually(async () => ((await (await fetch(`${example.url}/health`)).json()) as { synced: boolean }).synced, {
    timeoutMs: 20_000, intervalMs: 100, what: () => `the example synced with the feed\n${example.output()}`
  })
}

const form = (fields: Record<string, string>): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString()
})

async function login (service: Running, username: string, password: string): Promise<string> {
  const res = await fetch(`${service.url}/auth/token`, form({ grant_type: 'password', username, password }))
  if (res.status !== 200) throw new Error(`login failed: ${res.status}`)
  return ((await res.json()) as { access_token: string }).access_token
}

test('example:downstream: when a user logs in, calls the example, and logs out, then the example refuses the token within one second, and still after its restart', async (t) => {
  const dataDir = await tempDir(t)
  const passwordFile = join(dataDir, 'admin-password')
  await writeFile(passwordFile, `${ADMIN_PASSWORD}\n`, { mode: 0o600 })
  const databaseUrl = await testDatabaseUrl(t)
  const admin = uniqueName('admin')
  const service = await startServer({
    DATA_DIR: dataDir,
    LOG_LEVEL: 'info',
    JWT_PRIVATE_KEY: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    ADMIN_USERNAME: admin,
    ADMIN_EMAIL: `${admin}@example.com`,
    ADMIN_PASSWORD_FILE: passwordFile,
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_TIME_COST: '1',
    RATE_LIMIT_ENABLED: 'false',
    ...(databaseUrl !== undefined ? { DATABASE_URL: databaseUrl } : {})
  })
  t.teardown(async () => { await stopServer(service) })

  const adminToken = await login(service, admin, ADMIN_PASSWORD)
  const created = await fetch(`${service.url}/admin/clients`, {
    method: 'POST',
    headers: { ...bearer(adminToken), 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'downstream-example', scopes: ['sessions:ended'] })
  })
  t.equal(created.status, 201, 'a service client for the example')
  const client = (await created.json()) as { client_id: string, client_secret: string }
  const exampleEnv = { AUTH_URL: service.url, CLIENT_ID: client.client_id, CLIENT_SECRET: client.client_secret, LOG_LEVEL: 'info' }

  let example = await startExample(exampleEnv)
  t.teardown(async () => { await stopServer(example) })
  await synced(example)

  const username = uniqueName('e2e')
  const registered = await fetch(`${service.url}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, email: `${username}@example.com`, password: 'correct horse battery' })
  })
  t.equal(registered.status, 201)
  const userId = ((await registered.json()) as { id: string }).id
  const token = await login(service, username, 'correct horse battery')

  const whoami = await fetch(`${example.url}/whoami`, { headers: bearer(token) })
  t.equal(whoami.status, 200)
  t.match(await whoami.json(), { sub: userId, preferred_username: username, iss: 'auth-service', aud: 'auth-service' }, 'the caller\'s claims')
  const anonymous = await fetch(`${example.url}/whoami`)
  t.equal(anonymous.status, 401, 'without a token')
  t.equal(anonymous.headers.get('www-authenticate'), 'Bearer')

  t.equal((await fetch(`${service.url}/auth/logout`, { method: 'POST', headers: bearer(token) })).status, 204, 'logged out at the service')
  const tookMs = await eventually(async () => (await fetch(`${example.url}/whoami`, { headers: bearer(token) })).status === 401, {
    timeoutMs: 1000 + TIMING_MARGIN_MS, intervalMs: 10, what: 'the example refusing the logged-out token'
  })
  t.ok(tookMs < 1000 + TIMING_MARGIN_MS, `refused ${Math.round(tookMs)} ms after the logout`)
  const refused = await fetch(`${example.url}/whoami`, { headers: bearer(token) })
  t.equal(refused.headers.get('www-authenticate'), 'Bearer error="invalid_token", error_description="Session has ended"')
  t.match(await refused.json(), { status: 401, code: 'invalid_token', detail: 'Session has ended' })

  t.equal(await stopServer(example), 0, 'the example exits 0 on SIGTERM')
  example = await startExample(exampleEnv)
  await synced(example)
  const afterRestart = await fetch(`${example.url}/whoami`, { headers: bearer(token) })
  t.equal(afterRestart.status, 401, 'a restarted example learns the ended session from the feed')
  t.match(await afterRestart.json(), { detail: 'Session has ended' })

  for (const [name, output] of [['service', service.output()], ['example', example.output()]]) {
    t.notOk(output.includes(token.split('.')[2]), `${name}: no access token in the log`)
    t.notOk(output.includes(client.client_secret), `${name}: no client secret in the log`)
    t.notOk(output.includes(ADMIN_PASSWORD), `${name}: no password in the log`)
  }
})
