import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'tap'
import { sql } from 'drizzle-orm'
import { buildApp } from '../../src/app.js'
import { ConfigError } from '../../src/config.js'
import { build, embeddedDatabase, formPost, register, rowsOf, tempDir, testConfig, testDatabaseUrl } from '../helper.js'

const PASSWORD = 'bootstrap admin password'

async function passwordFile (t: Parameters<typeof tempDir>[0], content = `${PASSWORD}\n`): Promise<string> {
  const file = join(await tempDir(t), 'admin-password')
  await writeFile(file, content)
  return file
}

test('ADMIN_*: when two instances start together with no administrator, then exactly one is created and logs in with the admin scopes; a restart adds none', async (t) => {
  const url = await testDatabaseUrl(t)
  const name = `boot_${process.pid}`
  const settings = { DATABASE_URL: url, ADMIN_USERNAME: name, ADMIN_EMAIL: `${name}@example.com`, ADMIN_PASSWORD_FILE: await passwordFile(t) }
  const options = url === undefined ? { database: await embeddedDatabase() } : {}
  // The embedded database is shared by this file's tests: start from no administrator there.
  if (url === undefined) await (await embeddedDatabase()).db.execute(sql`delete from user_roles where role_name = 'admin'`)
  const apps = await Promise.all([buildApp(testConfig(settings), options), buildApp(testConfig(settings), options)])
  t.teardown(async () => { await Promise.all(apps.map(async app => { await app.close() })) })
  const admins = async (): Promise<Array<{ username: string }>> => rowsOf(await apps[0].database.db.execute(sql`
    select u.username from users u join user_roles r on r.user_id = u.id where r.role_name = 'admin'`))
  t.same(await admins(), [{ username: name }])
  const login = await apps[1].inject(formPost('/auth/token', { username: name, password: PASSWORD }))
  t.equal(login.statusCode, 200)
  t.equal(login.json().scope, 'clients:read clients:write roles:write users:read users:write')

  const restarted = await buildApp(testConfig(settings), options)
  await restarted.close()
  t.same(await admins(), [{ username: name }], 'idempotent')
})

test('ADMIN_*: when an administrator exists, or the name belongs to a plain user, then nobody is made one', async (t) => {
  const app = await build(t)
  const plain = await register(app)
  const url = app.config.DATABASE_URL
  const options = url === undefined ? { database: await embeddedDatabase() } : {}
  await app.database.db.execute(sql`delete from user_roles where role_name = 'admin'`)
  const settings = { DATABASE_URL: url, ADMIN_USERNAME: plain.username, ADMIN_EMAIL: `other_${plain.email}`, ADMIN_PASSWORD_FILE: await passwordFile(t) }
  const second = await buildApp(testConfig(settings), options)
  await second.close()
  const roles = rowsOf<{ role_name: string }>(await app.database.db.execute(sql`select role_name from user_roles where user_id = ${plain.id}::uuid`))
  t.same(roles.map(r => r.role_name), ['user'], 'an existing account is not elevated by a setting')
})

test('ADMIN_*: when the settings are partial, the file is missing or the password breaks the rules, then the service does not start and says which setting', async (t) => {
  t.throws(() => testConfig({ ADMIN_USERNAME: 'someone' }), ConfigError)
  t.throws(() => testConfig({ ADMIN_USERNAME: 'someone' }), /ADMIN_USERNAME: set it with ADMIN_EMAIL and ADMIN_PASSWORD_FILE/)
  const options = { database: await embeddedDatabase() }
  const base = { ADMIN_USERNAME: 'someone', ADMIN_EMAIL: 'someone@example.com' }
  await t.rejects(buildApp(testConfig({ ...base, ADMIN_PASSWORD_FILE: '/nonexistent/admin-password' }), options), /ADMIN_PASSWORD_FILE: cannot be read \(ENOENT\)/)
  await t.rejects(buildApp(testConfig({ ...base, ADMIN_PASSWORD_FILE: await passwordFile(t, 'short\n') }), options), /ADMIN_PASSWORD_FILE: .*8/)
})
