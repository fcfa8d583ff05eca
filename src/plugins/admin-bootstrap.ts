import { readFile } from 'node:fs/promises'
import fp from 'fastify-plugin'
import { ConfigError } from '../config.js'
import { registrationProblems } from '../schemas/user.js'

const SETTING_OF: Record<string, string> = { username: 'ADMIN_USERNAME', email: 'ADMIN_EMAIL', password: 'ADMIN_PASSWORD_FILE' }

/**
 * ADMIN_USERNAME, ADMIN_EMAIL and ADMIN_PASSWORD_FILE: at start, if nobody holds the admin role, that user is
 * created as an administrator (for compose and orchestrators; `npm run users:create` does it by hand).
 */
export default fp(async (app) => {
  const { ADMIN_USERNAME, ADMIN_EMAIL, ADMIN_PASSWORD_FILE } = app.config
  if (ADMIN_USERNAME === undefined || ADMIN_EMAIL === undefined || ADMIN_PASSWORD_FILE === undefined) return
  let password: string
  try {
    password = (await readFile(ADMIN_PASSWORD_FILE, 'utf8')).split(/\r?\n/)[0]
  } catch (error) {
    throw new ConfigError([`ADMIN_PASSWORD_FILE: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`])
  }
  const input = { username: ADMIN_USERNAME, email: ADMIN_EMAIL, password }
  const problems = registrationProblems(input)
  const weak = problems.length > 0 ? undefined : await app.passwordPolicy.problem(password, input)
  if (weak !== undefined) problems.push(`password: ${weak}`)
  if (problems.length > 0) throw new ConfigError(problems.map(p => p.replace(/^(\w+):/, (_, field: string) => `${SETTING_OF[field] ?? field}:`)))
  const outcome = await app.users.ensureAdmin(input)
  if (outcome === 'created') app.log.info({ username: ADMIN_USERNAME }, 'administrator created from ADMIN_USERNAME')
  if (outcome === 'taken') app.log.warn({ username: ADMIN_USERNAME }, 'no administrator, and ADMIN_USERNAME or ADMIN_EMAIL belongs to an existing user, who was not made one')
}, { name: 'admin-bootstrap', dependencies: ['config', 'users'] })
