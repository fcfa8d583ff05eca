import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { test, type Test } from 'tap'
import { buildApp } from '../src/app.js'
import { claimsOf, formPost, REPO_ROOT, runToExit, SPAWN_CWD, tempDir, testConfig, testDatabaseUrl } from './helper.js'

const CLI = join(REPO_ROOT, 'src', 'users-create.ts')
const CHEAP_ARGON2 = { ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1' }

/** The command as `npm run users:create` runs it, the password piped to standard input. */
async function usersCreate (env: Record<string, string>, args: string[], stdin: string): Promise<{ code: number | null, output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    cwd: SPAWN_CWD,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...CHEAP_ARGON2, ...env },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  child.stdin.end(stdin)
  return await runToExit(child, 60_000)
}

async function databaseEnv (t: Test): Promise<Record<string, string>> {
  const url = await testDatabaseUrl(t)
  return url !== undefined ? { DATABASE_URL: url } : { DATA_DIR: await tempDir(t) }
}

test('users:create: when run with --role admin and a password on standard input, then that user logs in holding the admin scopes', async (t) => {
  const env = await databaseEnv(t)
  const password = 'first admin password, long enough'
  const created = await usersCreate(env, ['--username', 'root_admin', '--email', 'root@example.com', '--role', 'admin'], `${password}\n`)
  t.equal(created.code, 0, created.output)
  const printed = JSON.parse(created.output.trim().split('\n').pop() as string)
  t.match(printed, { username: 'root_admin', email: 'root@example.com', roles: ['admin', 'user'] })
  t.notMatch(created.output, password, 'the password is never printed')

  const app = await buildApp(testConfig({ ...env, ...CHEAP_ARGON2 }))
  const login = await app.inject(formPost('/auth/token', { username: 'root_admin', password }))
  t.equal(login.statusCode, 200)
  t.equal(login.json().scope, 'clients:read clients:write roles:write users:read users:write')
  t.equal(claimsOf(login.json().access_token).sub, printed.id)
  // The embedded database takes one process at a time (DATA_DIR is locked): the service closes before the next command.
  await app.close()

  const again = await usersCreate(env, ['--username', 'root_admin', '--email', 'other@example.com'], `${password}\n`)
  t.equal(again.code, 3)
  t.match(again.output, /username or email already registered/)
})

test('users:create: when the input breaks the registration rules or names an unknown role, then nothing is created and the exit code says so', async (t) => {
  const env = await databaseEnv(t)
  const short = await usersCreate(env, ['--username', 'someone', '--email', 'someone@example.com'], 'short\n')
  t.equal(short.code, 2)
  t.match(short.output, /password: .*8/)
  t.notMatch(short.output, /short/, 'the password is not echoed')
  const badEmail = await usersCreate(env, ['--username', 'someone', '--email', 'not-an-email'], 'long enough password\n')
  t.equal(badEmail.code, 2)
  t.match(badEmail.output, /email: /)
  const unknownRole = await usersCreate(env, ['--username', 'someone', '--email', 'someone@example.com', '--role', 'wizard'], 'long enough password\n')
  t.equal(unknownRole.code, 2)
  t.match(unknownRole.output, /no role named wizard/)
  const usage = await usersCreate(env, ['--username', 'someone'], '')
  t.equal(usage.code, 2)
  t.match(usage.output, /usage: npm run users:create/)
})
