import { test } from 'tap'
import { ImportFileError, parseUserFile } from '../../src/services/user-import.js'

const HASH = '$2b$04$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'

test('parseUserFile: when the file is a JSON array, then each object comes with the line it starts on', async (t) => {
  const text = [
    '[',
    `  {"username": "ann", "email": "ann@example.com", "password_hash": "${HASH}"},`,
    '  {',
    '    "username": "bob", "email": "bob@example.com",',
    `    "password_hash": "${HASH}", "roles": ["user"], "note": "a \\"quoted\\" [bracket] {brace}"`,
    '  }, "not an object",',
    '',
    `  {"username": "cyd", "email": "cyd@example.com", "password_hash": "${HASH}"}`,
    ']'
  ].join('\n')
  const records = parseUserFile(text, 'users.json')
  t.same(records.map(r => r.line), [2, 3, 6, 8])
  t.match(records[1], { fields: { username: 'bob', roles: ['user'] } })
  t.same(records[2], { line: 6, problem: 'not a JSON object' })
  t.same(parseUserFile('[]'), [])
})

test('parseUserFile: when the file has one JSON object per line, then each is read alone and a broken line is a broken row', async (t) => {
  const text = `{"username": "ann", "email": "ann@example.com", "password_hash": "${HASH}"}\r\n\n{"username": "bob",\n[1, 2]\n{"username": "cyd"}\n`
  const records = parseUserFile(text, 'users.jsonl')
  t.same(records, [
    { line: 1, fields: { username: 'ann', email: 'ann@example.com', password_hash: HASH } },
    { line: 3, problem: 'not valid JSON' },
    { line: 4, problem: 'not a JSON object' },
    { line: 5, fields: { username: 'cyd' } }
  ])
})

test('parseUserFile: when the file is CSV, then the header names the fields and each row keeps the file line it starts on', async (t) => {
  const text = [
    '\uFEFFUsername,email,password_hash,roles,email_verified',
    `ann,ann@example.com,${HASH},,true`,
    '',
    `"bob","bob@example.com","${HASH}","user,editor",0`,
    'cyd , "cyd@example.com',
    `",${HASH},,`,
    '',
    'dee,dee@example.com'
  ].join('\r\n')
  const records = parseUserFile(text, 'export.txt')
  t.same(records, [
    { line: 2, fields: { username: 'ann', email: 'ann@example.com', password_hash: HASH, roles: '', email_verified: 'true' } },
    { line: 4, fields: { username: 'bob', email: 'bob@example.com', password_hash: HASH, roles: 'user,editor', email_verified: '0' } },
    { line: 5, fields: { username: 'cyd', email: 'cyd@example.com\r\n', password_hash: HASH, roles: '', email_verified: '' } },
    { line: 8, problem: '2 fields where the header has 5' }
  ])
})

test('parseUserFile: when the file cannot be read as users at all, then an ImportFileError that says why and where', async (t) => {
  const refused: Array<[string, string, RegExp]> = [
    ['  \n', '', /^the file is empty$/],
    ['[\n{"username": "ann"},\n{"username" "bob"}\n]', '', /^not valid JSON \(line 3\): Expected ':' after property name$/],
    [`[{"password_hash": ${HASH}}]`, '', /^not valid JSON$/],
    ['"users"', 'users.json', /^not JSON: /],
    ['[{"username": "ann"}', 'users.json', /^not valid JSON/],
    ['username,email\nann,ann@example.com', 'users.json', /^not JSON: expected an array of objects or one object per line$/],
    ['\nusername,email,hashed_password,disabled\nann,a@example.com,x,0', '', /^CSV header \(line 2\): unknown column "hashed_password", unknown column "disabled", no password_hash column;/],
    ['username,email,password_hash\nann,"a@example.com,x\n', 'users.csv', /^not valid CSV \(line 2\): Quote Not Closed$/],
    [`username,email,password_hash\nann,a@example.com,${HASH}"x"\n`, 'users.csv', /^not valid CSV \(line 2\): Invalid Opening Quote$/],
    // No header: the first user's fields are not quoted back (one is a password hash).
    [`ann,ann@example.com,${HASH}\nbob,bob@example.com,${HASH}\n`, 'users.csv', /^CSV header \(line 1\): the first line must name the columns: username, email, password_hash and optionally roles, email_verified$/]
  ]
  for (const [text, fileName, message] of refused) {
    let thrown: unknown
    try { parseUserFile(text, fileName) } catch (error) { thrown = error }
    t.ok(thrown instanceof ImportFileError, JSON.stringify(text))
    t.match((thrown as Error).message, message)
  }
})
