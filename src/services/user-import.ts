import { extname } from 'node:path'
import { parse as parseCsv } from 'csv-parse/sync'
import { inArray, or, sql } from '../db/orm.js'
import { Value } from '@sinclair/typebox/value'
import type { Database } from '../db/client.js'
import { roles, userRoles, users } from '../db/schema.js'
import { RegisterBodySchema } from '../schemas/user.js'
import { storedHashProblem } from './hash-formats.js'
import { DEFAULT_ROLE } from './users.js'

/** One user as read from the file, with the line it starts on: its fields, or why they could not be read. */
export type ImportRecord =
  | { line: number, fields: Record<string, unknown> }
  | { line: number, problem: string }

export interface SkippedRow {
  line: number
  reason: string
}

/** What an import did (or, in a dry run, would do). */
export interface ImportSummary {
  imported: number
  skipped: SkippedRow[]
}

export interface ImportOptions {
  /** Checks everything against the database and writes nothing. */
  dryRun?: boolean
  /** Users per transaction. */
  batchSize?: number
}

/** A file that cannot be read as a list of users at all, as opposed to rows of it that are skipped. */
export class ImportFileError extends Error {
  override name = 'ImportFileError'
}

export const IMPORT_FIELDS = ['username', 'email', 'password_hash', 'roles', 'email_verified']
const REQUIRED_FIELDS = ['username', 'email', 'password_hash'] as const
const COLUMNS_HINT = 'username, email, password_hash and optionally roles, email_verified'

/** Whether a name read from the file may be quoted in a message: never a value that could be a password hash. */
const looksLikeName = (name: string): boolean => /^[A-Za-z0-9_][A-Za-z0-9_. :-]{0,63}$/.test(name)

/**
 * Reads users from a file's text: a JSON array, JSON lines (one object per line) or CSV with a header row. A `.csv`
 * name means CSV; otherwise the first character decides (`[`: array, `{`: lines, anything else: CSV).
 */
export function parseUserFile (text: string, fileName = ''): ImportRecord[] {
  const body = text.replace(/^\uFEFF/, '')
  const first = /\S/.exec(body)?.[0]
  if (first === undefined) throw new ImportFileError('the file is empty')
  const extension = extname(fileName).toLowerCase()
  if (extension !== '.csv') {
    if (first === '[') return parseJsonArray(body)
    if (first === '{') return parseJsonLines(body)
    if (['.json', '.jsonl', '.ndjson'].includes(extension)) throw new ImportFileError('not JSON: expected an array of objects or one object per line')
  }
  return parseCsvText(body)
}

function recordOf (line: number, value: unknown): ImportRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { line, problem: 'not a JSON object' }
  return { line, fields: value as Record<string, unknown> }
}

const lineAt = (text: string, position: number): number => text.slice(0, position).split('\n').length

function parseJsonArray (text: string): ImportRecord[] {
  // Starting with '[', whatever parses is an array.
  let values: unknown[]
  try {
    values = JSON.parse(text)
  } catch (error) {
    // Only V8's description and position: some of its messages quote the text, which may hold a password hash.
    const found = /^(.*?) in JSON at position (\d+)/.exec((error as Error).message)
    throw new ImportFileError(found === null ? 'not valid JSON' : `not valid JSON (line ${lineAt(text, Number(found[2]))}): ${found[1]}`)
  }
  const lines = elementLines(text)
  return values.map((value, i) => recordOf(lines[i], value))
}

/** The line on which each element of a (valid) JSON array starts. */
function elementLines (text: string): number[] {
  const lines: number[] = []
  let line = 1
  let depth = 0
  let inString = false
  let escaped = false
  let expectingElement = false
  for (const char of text) {
    if (char === '\n') line++
    if (inString) {
      if (escaped) escaped = false
      else if (char === '\\') escaped = true
      else if (char === '"') inString = false
      continue
    }
    if (depth === 1 && expectingElement && !/\s|\]/.test(char)) {
      lines.push(line)
      expectingElement = false
    }
    if (char === '"') inString = true
    else if (char === '[' || char === '{') expectingElement = ++depth === 1
    else if (char === ']' || char === '}') depth--
    else if (char === ',' && depth === 1) expectingElement = true
  }
  return lines
}

function parseJsonLines (text: string): ImportRecord[] {
  const records: ImportRecord[] = []
  for (const [i, content] of text.split('\n').entries()) {
    if (content.trim() === '') continue
    let value: unknown
    try {
      value = JSON.parse(content)
    } catch {
      records.push({ line: i + 1, problem: 'not valid JSON' })
      continue
    }
    records.push(recordOf(i + 1, value))
  }
  return records
}

interface CsvRow {
  record: string[]
  info: { bytes: number }
}

function parseCsvText (text: string): ImportRecord[] {
  let rows: CsvRow[]
  try {
    rows = parseCsv(text, { skip_empty_lines: true, trim: true, info: true, relax_column_count: true }) as unknown as CsvRow[]
  } catch (error) {
    // The kind and the line only: csv-parse's message may quote a field, which may be a password hash.
    const { message, lines } = error as Error & { lines?: number }
    throw new ImportFileError(`not valid CSV${lines === undefined ? '' : ` (line ${lines})`}: ${message.split(':')[0]}`)
  }
  const lines = startLines(text, rows)
  const columns = rows[0].record.map(name => name.toLowerCase())
  // A file without a header would otherwise have its first user's fields, hash included, quoted back as column names.
  if (!columns.every(looksLikeName)) throw new ImportFileError(`CSV header (line ${lines[0]}): the first line must name the columns: ${COLUMNS_HINT}`)
  const unknown = columns.filter(name => !IMPORT_FIELDS.includes(name))
  const missing = REQUIRED_FIELDS.filter(name => !columns.includes(name))
  const repeated = columns.filter((name, i) => columns.indexOf(name) !== i)
  if (unknown.length > 0 || missing.length > 0 || repeated.length > 0) {
    const problems = [
      ...unknown.map(name => `unknown column ${JSON.stringify(name)}`),
      ...missing.map(name => `no ${name} column`),
      ...repeated.map(name => `column ${name} twice`)
    ]
    throw new ImportFileError(`CSV header (line ${lines[0]}): ${problems.join(', ')}; the columns are ${COLUMNS_HINT}`)
  }
  return rows.slice(1).map(({ record }, i) => {
    const line = lines[i + 1]
    if (record.length !== columns.length) {
      const hint = record.some(field => field.startsWith('$argon2')) ? ' (an argon2 hash holds commas: quote it)' : ''
      return { line, problem: `${record.length} fields where the header has ${columns.length}${hint}` }
    }
    return { line, fields: Object.fromEntries(columns.map((name, j) => [name, record[j]])) }
  })
}

/**
 * The line each record starts on. csv-parse's own line count is off after a quoted CRLF, so it is counted here: a
 * record starts where the previous one ended (its byte offset, `info.bytes`), after any blank lines.
 */
function startLines (text: string, rows: CsvRow[]): number[] {
  const bytes = Buffer.from(text)
  const lines: number[] = []
  let linesBefore = 0
  let offset = 0
  for (const { info } of rows) {
    const segment = bytes.subarray(offset, info.bytes).toString()
    const blank = /^(?:[ \t]*\r?\n)*/.exec(segment)?.[0] ?? ''
    lines.push(linesBefore + 1 + newlines(blank))
    linesBefore += newlines(segment)
    offset = info.bytes
  }
  return lines
}

const newlines = (text: string): number => text.split('\n').length - 1

/** A user ready to be inserted. */
interface Candidate {
  line: number
  username: string
  email: string
  passwordHash: string
  roles: string[]
  emailVerified: boolean
}

const FLAGS = new Map<unknown, boolean>([[true, true], [false, false], [1, true], [0, false], ['true', true], ['false', false], ['1', true], ['0', false]])

const absent = (value: unknown): boolean => value === undefined || value === null || value === ''

/** The candidate a record makes, or every reason it cannot be one. Registration's rules, except the password's. */
function validate (fields: Record<string, unknown>, line: number, roleNames: Set<string>): Candidate | string[] {
  const problems: string[] = []
  const unknown = Object.keys(fields).filter(name => !IMPORT_FIELDS.includes(name))
  if (unknown.length > 0) problems.push(`unknown field ${unknown.map(name => looksLikeName(name) ? name : '(unnamed)').join(', ')}`)
  for (const name of REQUIRED_FIELDS) {
    const value = fields[name]
    if (absent(value)) problems.push(`${name}: required`)
    else if (typeof value !== 'string') problems.push(`${name}: must be a string`)
  }
  for (const name of ['username', 'email'] as const) {
    const value = fields[name]
    if (typeof value === 'string' && value !== '') {
      problems.push(...[...Value.Errors(RegisterBodySchema.properties[name], value)].map(e => `${name}: ${e.message.toLowerCase()}`))
    }
  }
  const passwordHash = fields.password_hash
  if (typeof passwordHash === 'string' && passwordHash !== '') {
    // Never the hash itself in a message: the summary is printed.
    const problem = storedHashProblem(passwordHash)
    if (problem !== undefined) problems.push(`password_hash: ${problem}`)
  }

  const rolesValue = fields.roles
  let names: string[] = []
  if (typeof rolesValue === 'string') names = rolesValue.split(/[\s,]+/).filter(name => name !== '')
  else if (Array.isArray(rolesValue) && rolesValue.every(name => typeof name === 'string')) names = rolesValue
  else if (!absent(rolesValue)) problems.push('roles: must be a list of role names')
  const unknownRoles = names.filter(name => !roleNames.has(name))
  if (unknownRoles.length > 0) problems.push(`roles: no role named ${unknownRoles.map(name => looksLikeName(name) ? name : '(not a role name)').join(', ')}`)

  const verified = fields.email_verified
  const emailVerified = absent(verified) ? false : FLAGS.get(typeof verified === 'string' ? verified.toLowerCase() : verified)
  if (emailVerified === undefined) problems.push('email_verified: must be true, false, 1 or 0')

  if (problems.length > 0) return problems
  return {
    line,
    username: fields.username as string,
    email: fields.email as string,
    passwordHash: passwordHash as string,
    roles: [...new Set([DEFAULT_ROLE, ...names])],
    emailVerified: emailVerified as boolean
  }
}

/** The usernames and emails of a batch that existing users hold, lower-cased (the unique indexes' notion of equal). */
async function taken (db: Database, batch: Candidate[]): Promise<{ usernames: Set<string>, emails: Set<string> }> {
  const username = sql<string>`lower(${users.username})`
  const email = sql<string>`lower(${users.email})`
  const rows = await db.select({ username, email }).from(users).where(or(
    inArray(username, batch.map(c => c.username.toLowerCase())),
    inArray(email, batch.map(c => c.email.toLowerCase()))
  ))
  return { usernames: new Set(rows.map(r => r.username)), emails: new Set(rows.map(r => r.email)) }
}

function clash (candidate: Candidate, held: { usernames: Set<string>, emails: Set<string> }): string | undefined {
  const username = held.usernames.has(candidate.username.toLowerCase())
  const email = held.emails.has(candidate.email.toLowerCase())
  if (username && email) return 'username and email taken'
  if (username) return 'username taken'
  if (email) return 'email taken'
  return undefined
}

/**
 * Imports the records' users with their password hashes as they are (rehashed to argon2id at each one's first
 * login). Malformed rows, rows repeating an earlier row's username or email, and rows whose username or email an
 * existing user holds (without regard to case) are skipped with their line; the rest are inserted in transactions of
 * `batchSize`. Importing the same records again imports nothing.
 */
export async function importUsers (db: Database, records: ImportRecord[], options: ImportOptions = {}): Promise<ImportSummary> {
  const { dryRun = false, batchSize = 500 } = options
  const roleNames = new Set((await db.select({ name: roles.name }).from(roles)).map(r => r.name))
  const skipped: SkippedRow[] = []
  const candidates: Candidate[] = []
  const usernameLines = new Map<string, number>()
  const emailLines = new Map<string, number>()
  for (const record of records) {
    if ('problem' in record) {
      skipped.push({ line: record.line, reason: record.problem })
      continue
    }
    const result = validate(record.fields, record.line, roleNames)
    if (Array.isArray(result)) {
      skipped.push({ line: record.line, reason: result.join('; ') })
      continue
    }
    const username = result.username.toLowerCase()
    const email = result.email.toLowerCase()
    const earlier = usernameLines.get(username)
    const earlierEmail = emailLines.get(email)
    if (earlier !== undefined || earlierEmail !== undefined) {
      skipped.push({ line: record.line, reason: earlier !== undefined ? `same username as line ${earlier}` : `same email as line ${earlierEmail as number}` })
      continue
    }
    usernameLines.set(username, record.line)
    emailLines.set(email, record.line)
    candidates.push(result)
  }

  let imported = 0
  for (let start = 0; start < candidates.length; start += batchSize) {
    const batch = candidates.slice(start, start + batchSize)
    if (dryRun) {
      const held = await taken(db, batch)
      for (const candidate of batch) {
        const reason = clash(candidate, held)
        if (reason !== undefined) skipped.push({ line: candidate.line, reason })
        else imported++
      }
      continue
    }
    const outcome = await db.transaction(async (tx) => {
      const held = await taken(tx, batch)
      const batchSkipped: SkippedRow[] = []
      const fresh: Candidate[] = []
      for (const candidate of batch) {
        const reason = clash(candidate, held)
        if (reason !== undefined) batchSkipped.push({ line: candidate.line, reason })
        else fresh.push(candidate)
      }
      if (fresh.length === 0) return { batchSkipped, inserted: 0 }
      // The unique indexes decide against registrations made since the check: such a row is skipped, not an error.
      const rows = await tx.insert(users)
        .values(fresh.map(({ username, email, passwordHash, emailVerified }) => ({ username, email, passwordHash, emailVerified })))
        .onConflictDoNothing()
        .returning({ id: users.id, username: users.username })
      const ids = new Map(rows.map(row => [row.username, row.id]))
      const grants = fresh.flatMap(c => ids.has(c.username) ? c.roles.map(roleName => ({ userId: ids.get(c.username) as string, roleName })) : [])
      if (grants.length > 0) await tx.insert(userRoles).values(grants)
      for (const candidate of fresh) {
        if (!ids.has(candidate.username)) batchSkipped.push({ line: candidate.line, reason: 'username or email taken (registered during the import)' })
      }
      return { batchSkipped, inserted: rows.length }
    })
    skipped.push(...outcome.batchSkipped)
    imported += outcome.inserted
  }
  skipped.sort((a, b) => a.line - b.line)
  return { imported, skipped }
}
