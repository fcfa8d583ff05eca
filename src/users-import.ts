// `npm run users:import -- FILE [--dry-run]`: imports users from another app, their password hashes as they are
// (bcrypt, passlib's pbkdf2-sha256, argon2), each rehashed to argon2id at its first login. See docs/import.md.
// In the image: node dist/users-import.js FILE [--dry-run]
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from './config.js'
import { openDatabase } from './db/client.js'
import { DataDirLockedError } from './db/data-dir-lock.js'
import { loadEnvFile } from './startup/env-file.js'
import { ImportFileError, importUsers, parseUserFile, type ImportRecord } from './services/user-import.js'

const USAGE = 'usage: npm run users:import -- FILE [--dry-run]   (FILE: JSON array, JSON lines or CSV; see docs/import.md)'

function fail (message: string, code: number): never {
  console.error(message)
  process.exit(code)
}

let file: string
let dryRun: boolean
try {
  const { values, positionals } = parseArgs({ options: { 'dry-run': { type: 'boolean', default: false } }, allowPositionals: true })
  if (positionals.length !== 1) throw new Error(positionals.length === 0 ? 'no FILE given' : 'one FILE at a time')
  file = positionals[0]
  dryRun = values['dry-run']
} catch (error) {
  fail(`${(error as Error).message}\n${USAGE}`, 2)
}

let config
try {
  loadEnvFile()
  config = loadConfig({ ...process.env, NODE_ENV: 'development' })
  if (process.env.NODE_ENV === 'production' && config.DATABASE_URL === undefined) throw new ConfigError(['DATABASE_URL: is required when NODE_ENV=production'])
} catch (error) {
  fail(error instanceof ConfigError ? error.message : String(error), 1)
}

// The whole file is read and parsed before the database is opened: a file that cannot be read changes nothing.
let records: ImportRecord[]
try {
  const text = new TextDecoder('utf-8', { fatal: true }).decode(await readFile(file))
  records = parseUserFile(text, file)
} catch (error) {
  const { message, code } = error as NodeJS.ErrnoException
  if (error instanceof ImportFileError) fail(`${file}: ${message}`, 2)
  if (error instanceof TypeError && code === 'ERR_ENCODING_INVALID_ENCODED_DATA') fail(`${file}: not UTF-8 text`, 2)
  fail(`${file}: cannot be read: ${message}`, 2)
}

// The embedded database takes one process at a time: a running service holds DATA_DIR (a plain line, no stack trace).
const database = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, poolMax: 2 }).catch((error: unknown) => {
  if (!(error instanceof DataDirLockedError)) throw error
  console.error(error.message)
  process.exit(1)
})
let code = 0
try {
  if (config.MIGRATE_ON_START) await database.migrate()
  const { imported, skipped } = await importUsers(database.db, records, { dryRun })
  console.log(dryRun
    ? `dry run, nothing written: would import ${imported}, skip ${skipped.length}`
    : `imported ${imported}, skipped ${skipped.length}`)
  for (const { line, reason } of skipped) console.log(`line ${line}: ${reason}`)
} catch (error) {
  // Drizzle's error message quotes the query's parameters (password hashes among them): its cause's only.
  const { message, cause } = error as Error & { cause?: Error }
  console.error(`The import stopped: ${cause?.message ?? message.split('\n')[0]} (users committed before this stay; running the file again skips them)`)
  code = 1
} finally {
  await database.close()
}
process.exit(code)
