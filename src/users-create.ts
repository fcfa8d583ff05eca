// `npm run users:create -- --username NAME --email ADDRESS [--role ROLE]...`: creates a user from the command line,
// the first administrator among them; the password is read from standard input (without echo on a terminal).
// In the image: node dist/users-create.js --username NAME --email ADDRESS --role admin
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from './config.js'
import { openDatabase } from './db/client.js'
import { DataDirLockedError } from './db/data-dir-lock.js'
import { loadEnvFile } from './startup/env-file.js'
import { registrationProblems } from './schemas/user.js'
import { HashPool } from './services/hash-pool.js'
import { createPasswordHasher } from './services/password-hasher.js'
import { createPasswordPolicy } from './services/password-policy.js'
import { createUserService } from './services/users.js'

const USAGE = 'usage: npm run users:create -- --username NAME --email ADDRESS [--role ROLE]... (password on standard input)'

/** A line from standard input; on a terminal, typed without echo. */
async function readPassword (): Promise<string> {
  const stdin = process.stdin
  if (!stdin.isTTY) {
    let text = ''
    for await (const chunk of stdin) text += String(chunk)
    return text.split(/\r?\n/)[0]
  }
  process.stderr.write('Password: ')
  stdin.setRawMode(true)
  stdin.setEncoding('utf8')
  return await new Promise<string>((resolve) => {
    let typed = ''
    const onData = (chunk: string): void => {
      for (const char of chunk) {
        if (char === '\u0003') { process.stderr.write('\n'); process.exit(130) }
        if (char === '\r' || char === '\n' || char === '\u0004') {
          stdin.setRawMode(false)
          stdin.pause()
          stdin.off('data', onData)
          process.stderr.write('\n')
          resolve(typed)
          return
        }
        typed = char === '\u007f' || char === '\b' ? [...typed].slice(0, -1).join('') : typed + char
      }
    }
    stdin.on('data', onData)
  })
}

function fail (message: string, code = 1): never {
  console.error(message)
  process.exit(code)
}

let options
try {
  options = parseArgs({ options: { username: { type: 'string' }, email: { type: 'string' }, role: { type: 'string', multiple: true } } }).values
} catch (error) {
  fail(`${(error as Error).message}\n${USAGE}`, 2)
}
if (options.username === undefined || options.email === undefined) fail(USAGE, 2)

let config
try {
  loadEnvFile()
  // Signing keys are not this command's business; the database and the argon2 parameters are.
  config = loadConfig({ ...process.env, NODE_ENV: 'development' })
  if (process.env.NODE_ENV === 'production' && config.DATABASE_URL === undefined) throw new ConfigError(['DATABASE_URL: is required when NODE_ENV=production'])
} catch (error) {
  fail(error instanceof ConfigError ? error.message : String(error))
}

const password = await readPassword()
const input = { username: options.username, email: options.email, password }
const problems = registrationProblems(input)
// The same policy as every other place a password is set (services/password-policy.ts).
const weak = problems.length > 0 ? undefined : await createPasswordPolicy({ minLength: config.PASSWORD_MIN_LENGTH }).problem(password, input)
if (weak !== undefined) problems.push(`password: ${weak}`)
if (problems.length > 0) fail(`The user was not created:\n  ${problems.join('\n  ')}`, 2)

// The embedded database takes one process at a time: a running service holds DATA_DIR (a plain line, no stack trace).
const database = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, poolMax: 2 }).catch((error: unknown) => {
  if (!(error instanceof DataDirLockedError)) throw error
  console.error(error.message)
  process.exit(1)
})
const pool = new HashPool(Math.min(2, config.PASSWORD_HASH_THREADS ?? availableParallelism()))
let code = 0
try {
  if (config.MIGRATE_ON_START) await database.migrate()
  const hasher = await createPasswordHasher({ memoryCost: config.ARGON2_MEMORY_KIB, timeCost: config.ARGON2_TIME_COST, parallelism: config.ARGON2_PARALLELISM }, pool)
  const users = createUserService(database.db, hasher)
  const roles = options.role ?? []
  const unknown = await users.unknownRoles(roles)
  if (unknown.length > 0) {
    console.error(`The user was not created: no role named ${unknown.join(', ')}`)
    code = 2
  } else {
    const user = await users.create(input, roles)
    if (user === undefined) {
      console.error('The user was not created: username or email already registered')
      code = 3
    } else {
      console.log(JSON.stringify({ id: user.id, username: user.username, email: user.email, roles: (await users.grantsOf(user.id)).roles }))
    }
  }
} catch (error) {
  // Drizzle's error message quotes the query's parameters (the password hash among them): its cause's only.
  const { message, cause } = error as Error & { cause?: Error }
  console.error(`The user was not created: ${cause?.message ?? message.split('\n')[0]}`)
  code = 1
} finally {
  await pool.close()
  await database.close()
}
process.exit(code)
