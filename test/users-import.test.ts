import { spawn, spawnSync } from 'node:child_process'
import { pbkdf2Sync, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test, type Test } from 'tap'
import { buildApp } from '../src/app.js'
import { bcryptHash, formPost, freePort, REPO_ROOT, runToExit, SPAWN_CWD, tempDir, testConfig, testDatabaseUrl } from './helper.js'

const CLI = join(REPO_ROOT, 'src', 'users-import.ts')
const CHEAP_ARGON2 = { ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1' }

/** The command as `npm run users:import` runs it. */
async function usersImport (env: Record<string, string>, args: string[]): Promise<{ code: number | null, output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    cwd: SPAWN_CWD,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  return await runToExit(child, 60_000)
}

async function databaseEnv (t: Test): Promise<Record<string, string>> {
  const url = await testDatabaseUrl(t)
  return url !== undefined ? { DATABASE_URL: url } : { DATA_DIR: await tempDir(t) }
}

/** The status of each login, on the service built on the database the command wrote to (after it has exited). */
async function loginStatuses (env: Record<string, string>, logins: Array<[string, string]>): Promise<number[]> {
  const app = await buildApp(testConfig({ ...env, ...CHEAP_ARGON2 }))
  try {
    const statuses: number[] = []
    for (const [username, password] of logins) {
      statuses.push((await app.inject(formPost('/auth/token', { grant_type: 'password', username, password }))).statusCode)
    }
    return statuses
  } finally {
    await app.close()
  }
}

/** passlib's "ab64": standard base64 with '.' for '+' and no padding. */
const ab64 = (bytes: Buffer): string => bytes.toString('base64').replace(/=+$/, '').replaceAll('+', '.')

test('users:import: when run with --dry-run, then for real, then again, then it says what it would do, does it, and imports nothing the second time; the users log in with their old passwords', async (t) => {
  const env = await databaseEnv(t)
  const dir = await tempDir(t)
  const salt = randomBytes(16)
  const bcrypt = bcryptHash('tutorial password', { cost: 4 })
  const pbkdf2 = `$pbkdf2-sha256$1000$${ab64(salt)}$${ab64(pbkdf2Sync('passlib password', salt, 1000, 32, 'sha256'))}`
  const file = join(dir, 'users.csv')
  await writeFile(file, [
    'username,email,password_hash,email_verified',
    `johndoe,johndoe@example.com,${bcrypt},true`,
    `alice,alice@example.com,${pbkdf2},false`,
    `bob,bob@,${bcrypt},`
  ].join('\n'))

  const dry = await usersImport(env, [file, '--dry-run'])
  t.equal(dry.code, 0, dry.output)
  t.equal(dry.output, 'dry run, nothing written: would import 2, skip 1\nline 4: email: expected string to match \'email\' format\n')

  const first = await usersImport(env, [file])
  t.equal(first.code, 0, first.output)
  t.equal(first.output, 'imported 2, skipped 1\nline 4: email: expected string to match \'email\' format\n')

  const second = await usersImport(env, [file])
  t.equal(second.code, 0, second.output)
  t.equal(second.output, [
    'imported 0, skipped 3',
    'line 2: username and email taken',
    'line 3: username and email taken',
    'line 4: email: expected string to match \'email\' format',
    ''
  ].join('\n'))
  for (const output of [dry.output, first.output, second.output]) {
    t.notOk(output.includes(bcrypt.slice(7)) || output.includes(pbkdf2.slice(20)), 'no hash is printed')
  }

  // The bcrypt user, the pbkdf2-sha256 user, and that one with the other's password.
  t.same(await loginStatuses(env, [['johndoe', 'tutorial password'], ['alice', 'passlib password'], ['alice', 'tutorial password']]), [200, 200, 401])
})

test('users:import: when the arguments, the file or its format are wrong, then exit 2 with a message saying which', async (t) => {
  const dir = await tempDir(t)
  // Refused before any database is opened.
  const env = { DATA_DIR: dir }
  const write = async (name: string, content: string | Buffer): Promise<string> => {
    await writeFile(join(dir, name), content)
    return join(dir, name)
  }
  const cases: Array<[string[], RegExp]> = [
    [[], /no FILE given\nusage: npm run users:import -- FILE \[--dry-run\]/],
    [['a.csv', 'b.csv'], /one FILE at a time\nusage: /],
    [['--force', 'a.csv'], /Unknown option '--force'/],
    [[join(dir, 'missing.csv')], /missing\.csv: cannot be read: ENOENT/],
    [[await write('broken.json', '[\n{"username": "ann",}\n]')], /broken\.json: not valid JSON \(line 2\)/],
    [[await write('export.csv', 'username,email,hashed_password\nann,ann@example.com,x\n')], /export\.csv: CSV header \(line 1\): unknown column "hashed_password", no password_hash column/],
    [[await write('latin1.csv', Buffer.from('username,email,password_hash\nren\xe9,r@example.com,x\n', 'latin1'))], /latin1\.csv: not UTF-8 text/]
  ]
  for (const [args, message] of cases) {
    const run = await usersImport(env, args)
    t.equal(run.code, 2, args.join(' '))
    t.match(run.output, message)
  }
})

test('users:import: when the database cannot be reached, then exit 1 with its error', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'users.jsonl')
  await writeFile(file, JSON.stringify({ username: 'ann', email: 'ann@example.com', password_hash: bcryptHash('x', { cost: 4 }) }))
  const run = await usersImport({ DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/postgres` }, [file])
  t.equal(run.code, 1, run.output)
  t.match(run.output, /ECONNREFUSED/)
  t.notMatch(run.output, /imported/)
})

test('users:import: when the FastAPI tutorial\'s SQLite users table is exported with the sqlite3 command of docs/import.md, then its users are imported and log in', async (t) => {
  // Debian's sqlite3, which .ci/run installs: the export is run for real, never skipped.
  t.equal(spawnSync('sqlite3', ['-version']).status, 0, 'the sqlite3 command is installed')
  const env = await databaseEnv(t)
  const dir = await tempDir(t)
  const db = join(dir, 'app.db')
  // The tutorial's table, a passlib-style bcrypt hash ($2b$, here at cost 4), one disabled user left out by the query.
  const create = `create table users (id integer primary key, username varchar unique, email varchar unique, full_name varchar, hashed_password varchar, disabled boolean);
    insert into users (username, email, full_name, hashed_password, disabled) values
      ('johndoe', 'johndoe@example.com', 'John Doe', '${bcryptHash('secret', { cost: 4 })}', 0),
      ('alice', 'alice@example.com', 'Alice, Wonder', '${bcryptHash('secret2', { cost: 4, version: '2y' })}', null),
      ('mallory', 'mallory@example.com', null, '${bcryptHash('secret3', { cost: 4 })}', 1);`
  t.equal(spawnSync('sqlite3', [db, create]).status, 0)
  const exported = spawnSync('sqlite3', ['-header', '-csv', db,
    'select username, email, hashed_password as password_hash from users where not coalesce(disabled, 0)'], { encoding: 'utf8' })
  t.equal(exported.status, 0, exported.stderr)
  const file = join(dir, 'users.csv')
  await writeFile(file, exported.stdout)

  const run = await usersImport(env, [file])
  t.equal(run.code, 0, run.output)
  t.equal(run.output, 'imported 2, skipped 0\n')
  // mallory, disabled in the old app, was left out by the query.
  t.same(await loginStatuses(env, [['johndoe', 'secret'], ['alice@example.com', 'secret2'], ['mallory', 'secret3']]), [200, 200, 401])
})
