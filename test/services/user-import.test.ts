import { pbkdf2Sync, randomBytes } from 'node:crypto'
import { test } from 'tap'
import { inArray } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import { Algorithm, hashSync as argon2Hash } from '@node-rs/argon2'
import { users, type UserRow } from '../../src/db/schema.js'
import { importUsers, parseUserFile, type ImportOptions } from '../../src/services/user-import.js'
import { bcryptHash, build, formPost, register, uniqueName } from '../helper.js'

// bcrypt at cost 4, as passlib stores it ($2b$) but cheap.
const HASH = bcryptHash('old password', { cost: 4 })

async function importText (app: FastifyInstance, text: string, fileName: string, options: ImportOptions = {}): ReturnType<typeof importUsers> {
  return await importUsers(app.database.db, parseUserFile(text, fileName), options)
}

async function rowsNamed (app: FastifyInstance, names: string[]): Promise<Map<string, UserRow>> {
  const rows = await app.database.db.select().from(users).where(inArray(users.username, names))
  return new Map(rows.map(row => [row.username, row]))
}

const jsonLine = (fields: Record<string, unknown>): string => JSON.stringify(fields)

test('importUsers: when every row of a JSON array, JSON lines or CSV file is valid, then each user is created with its hash as it is, its roles and email_verified', async (t) => {
  const app = await build(t)
  const role = uniqueName('importer')
  await app.roles.put(role, { description: 'imported editors', scopes: [] })
  const [a, b, c, d, e, f] = ['a', 'b', 'c', 'd', 'e', 'f'].map(letter => uniqueName(`imp_${letter}`))
  const files: Array<[string, string]> = [
    ['users.json', JSON.stringify([
      { username: a, email: `${a}@example.com`, password_hash: HASH, roles: [role], email_verified: true },
      { username: b, email: `${b}@example.com`, password_hash: HASH }
    ], null, 2)],
    ['users.jsonl', [
      jsonLine({ username: c, email: `${c}@example.com`, password_hash: HASH, roles: `${role}`, email_verified: 1 }),
      jsonLine({ username: d, email: `${d}@example.com`, password_hash: HASH, roles: null, email_verified: null })
    ].join('\n')],
    ['users.csv', [
      'username,email,password_hash,roles,email_verified',
      `${e},${e}@example.com,${HASH},"user, ${role}",TRUE`,
      `${f},${f}@example.com,${HASH},,`
    ].join('\n')]
  ]
  for (const [fileName, text] of files) {
    t.same(await importText(app, text, fileName), { imported: 2, skipped: [] }, fileName)
  }
  const rows = await rowsNamed(app, [a, b, c, d, e, f])
  for (const [name, verified, roles] of [[a, true, [role, 'user']], [b, false, ['user']], [c, true, [role, 'user']], [d, false, ['user']], [e, true, [role, 'user']], [f, false, ['user']]] as const) {
    const row = rows.get(name)
    t.equal(row?.passwordHash, HASH, `${name}: the hash as it was`)
    t.equal(row?.emailVerified, verified, `${name}: email_verified`)
    t.same((await app.users.grantsOf(row?.id as string)).roles, [...roles].sort(), `${name}: roles`)
  }
})

test('importUsers: when rows are malformed, then each is skipped with its line and every reason, and the others are imported', async (t) => {
  const app = await build(t)
  const good = uniqueName('imp_good')
  const name = (n: number): string => `${good}_${n}`
  const csv = [
    'username,email,password_hash,roles,email_verified',
    `${good},${good}@example.com,${HASH},,`,
    `has space,${name(1)}@example.com,${HASH},,`,
    `${name(2)},not-an-email,${HASH},,`,
    `${name(3)},${name(3)}@example.com,correct horse,,`,
    `${name(4)},${name(4)}@example.com,$2b$16$${HASH.slice(7)},,`,
    `${name(5)},${name(5)}@example.com,${HASH},wizard,`,
    `${name(6)},${name(6)}@example.com,${HASH},,yes`,
    `${name(7)},${name(7)}@example.com`,
    `${name(8)},${name(8)}@example.com,,,`,
    `ab,x,${HASH},,`
  ].join('\n')
  const summary = await importText(app, csv, 'users.csv')
  t.equal(summary.imported, 1)
  t.match(summary.skipped, [
    { line: 3, reason: /^username: expected string to match/ },
    { line: 4, reason: /^email: expected string to match 'email' format$/ },
    { line: 5, reason: 'password_hash: not a bcrypt, pbkdf2-sha256 or argon2 hash' },
    { line: 6, reason: 'password_hash: bcrypt cost 16 is above 15' },
    { line: 7, reason: 'roles: no role named wizard' },
    { line: 8, reason: 'email_verified: must be true, false, 1 or 0' },
    { line: 9, reason: '2 fields where the header has 5' },
    { line: 10, reason: 'password_hash: required' },
    { line: 11, reason: /^username: expected string length greater or equal to 3; email: / }
  ])
  t.equal(summary.skipped.length, 9)
  t.notOk(summary.skipped.some(s => s.reason.includes(HASH.slice(7))), 'no reason quotes a hash')

  const json = [
    '[',
    `  {"username": 42, "email": "${name(9)}@example.com", "password_hash": "${HASH}"},`,
    `  {"username": "${name(10)}", "email": "${name(10)}@example.com", "password_hash": "${HASH}", "roles": {"admin": true}, "disabled": false},`,
    `  {"username": "${name(11)}", "email": "${name(11)}@example.com", "password_hash": "${HASH}", "roles": "user ${HASH}"},`,
    '  ["not", "an", "object"]',
    ']'
  ].join('\n')
  t.same(await importText(app, json, 'users.json'), {
    imported: 0,
    skipped: [
      { line: 2, reason: 'username: must be a string' },
      { line: 3, reason: 'unknown field disabled; roles: must be a list of role names' },
      { line: 4, reason: 'roles: no role named (not a role name)' },
      { line: 5, reason: 'not a JSON object' }
    ]
  })
  t.same([...(await rowsNamed(app, [good, ...Array.from({ length: 12 }, (_, i) => name(i))])).keys()], [good], 'only the good row was written')
})

test('importUsers: when a row clashes with an existing user or an earlier row, without regard to case, then it is skipped and says with what', async (t) => {
  const app = await build(t)
  const existing = await register(app, { username: uniqueName('Imp_Existing') })
  const other = await register(app)
  const [a, b, c] = ['a', 'b', 'c'].map(letter => uniqueName(`imp_clash_${letter}`))
  const lines = [
    jsonLine({ username: existing.username.toUpperCase(), email: `${a}@example.com`, password_hash: HASH }),
    jsonLine({ username: a, email: existing.email.toUpperCase(), password_hash: HASH }),
    jsonLine({ username: other.username.toLowerCase(), email: other.email, password_hash: HASH }),
    jsonLine({ username: b, email: `${b}@example.com`, password_hash: HASH }),
    jsonLine({ username: b.toUpperCase(), email: `${c}@example.com`, password_hash: HASH }),
    jsonLine({ username: c, email: `${b}@EXAMPLE.com`, password_hash: HASH })
  ]
  t.same(await importText(app, lines.join('\n'), 'users.jsonl'), {
    imported: 1,
    skipped: [
      { line: 1, reason: 'username taken' },
      { line: 2, reason: 'email taken' },
      { line: 3, reason: 'username and email taken' },
      { line: 5, reason: 'same username as line 4' },
      { line: 6, reason: 'same email as line 4' }
    ]
  })
  t.same([...(await rowsNamed(app, [a, b, b.toUpperCase(), c])).keys()], [b])
})

test('importUsers: when the same file is imported twice, then the second run imports nothing and says each is taken', async (t) => {
  const app = await build(t)
  const names = Array.from({ length: 5 }, () => uniqueName('imp_twice'))
  const csv = ['username,email,password_hash', ...names.map(n => `${n},${n}@example.com,${HASH}`)].join('\n')
  // Transactions of two users: three of them.
  t.same(await importText(app, csv, 'users.csv', { batchSize: 2 }), { imported: 5, skipped: [] })
  t.same(await importText(app, csv, 'users.csv', { batchSize: 2 }), {
    imported: 0,
    skipped: names.map((_, i) => ({ line: i + 2, reason: 'username and email taken' }))
  })
  t.equal((await rowsNamed(app, names)).size, 5)
})

test('importUsers: when it is a dry run, then it reports what a real run would and writes nothing', async (t) => {
  const app = await build(t)
  const existing = await register(app)
  const names = [uniqueName('imp_dry'), uniqueName('imp_dry')]
  const csv = [
    'username,email,password_hash',
    `${names[0]},${names[0]}@example.com,${HASH}`,
    `${existing.username},${uniqueName('imp_dry')}@example.com,${HASH}`,
    `${names[1]},${names[1]}@example.com,${HASH}`
  ].join('\n')
  const expected = { imported: 2, skipped: [{ line: 3, reason: 'username taken' }] }
  t.same(await importText(app, csv, 'users.csv', { dryRun: true }), expected)
  t.equal((await rowsNamed(app, names)).size, 0, 'nothing written')
  t.same(await importText(app, csv, 'users.csv'), expected, 'the real run does what the dry run said')
  t.equal((await rowsNamed(app, names)).size, 2)
})

/** passlib's "ab64": standard base64 with '.' for '+' and no padding. */
const ab64 = (bytes: Buffer): string => bytes.toString('base64').replace(/=+$/, '').replaceAll('+', '.')

test('POST /auth/token: when imported users log in with their old password (bcrypt $2b$ and $2y$, pbkdf2-sha256, argon2i), then 200 and their hash becomes argon2id; a wrong password gets 401 and changes nothing', async (t) => {
  const app = await build(t)
  const salt = randomBytes(16)
  const imported = [
    { password: 'passlib bcrypt password', hash: (p: string) => bcryptHash(p, { cost: 4, version: '2b' }) },
    { password: 'php bcrypt password', hash: (p: string) => bcryptHash(p, { cost: 4, version: '2y' }) },
    { password: 'passlib pbkdf2 pässword', hash: (p: string) => `$pbkdf2-sha256$1000$${ab64(salt)}$${ab64(pbkdf2Sync(p, salt, 1000, 32, 'sha256'))}` },
    { password: 'argon2i password', hash: (p: string) => argon2Hash(p, { algorithm: Algorithm.Argon2i, memoryCost: 1024, timeCost: 1 }) }
  ].map(({ password, hash }) => ({ username: uniqueName('imp_login'), password, passwordHash: hash(password) }))
  // An argon2 hash holds commas: quoted, as sqlite3 -csv quotes it.
  const csv = ['username,email,password_hash', ...imported.map(u => `${u.username},${u.username}@example.com,"${u.passwordHash}"`)].join('\n')
  t.same(await importText(app, csv, 'users.csv'), { imported: 4, skipped: [] })
  const unquoted = `username,email,password_hash\n${uniqueName('imp_login')},unquoted@example.com,${imported[3].passwordHash}`
  t.same(await importText(app, unquoted, 'users.csv'), { imported: 0, skipped: [{ line: 2, reason: '5 fields where the header has 3 (an argon2 hash holds commas: quote it)' }] })

  for (const user of imported) {
    const kind = user.passwordHash.split('$')[1]
    const wrong = await app.inject(formPost('/auth/token', { grant_type: 'password', username: user.username, password: `${user.password}!` }))
    t.equal(wrong.statusCode, 401, `${kind}: a wrong password`)
    t.equal((await rowsNamed(app, [user.username])).get(user.username)?.passwordHash, user.passwordHash, `${kind}: the old hash stays after a failed login`)

    const right = await app.inject(formPost('/auth/token', { grant_type: 'password', username: user.username, password: user.password }))
    t.equal(right.statusCode, 200, `${kind}: the old password logs in`)
    const rehashed = (await rowsNamed(app, [user.username])).get(user.username)?.passwordHash
    t.match(rehashed, /^\$argon2id\$v=19\$m=1024,t=1,p=1\$/, `${kind}: rehashed to argon2id with the service's parameters`)
    t.equal(await app.passwordHasher.verify(rehashed, user.password), true, `${kind}: the new hash is of the same password`)

    const again = await app.inject(formPost('/auth/token', { grant_type: 'password', username: user.username, password: user.password }))
    t.equal(again.statusCode, 200, `${kind}: and logs in again on the new hash`)
  }
})
