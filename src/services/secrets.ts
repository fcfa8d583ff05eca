import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { secretProblem } from '../config.js'

/**
 * The HS256 key: JWT_SECRET when set; otherwise (never in production, the config refuses that) a random secret
 * generated at first start and kept in the data directory, so tokens survive a restart.
 */
export async function resolveJwtSecret (configured: string | undefined, dataDir: string): Promise<string> {
  if (configured !== undefined) return configured
  const file = join(dataDir, 'jwt-secret')
  try {
    const stored = (await readFile(file, 'utf8')).trim()
    const problem = secretProblem(stored)
    if (problem !== undefined) throw new Error(`${file}: the stored secret ${problem}; delete the file to generate a new one`)
    return stored
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  await mkdir(dataDir, { recursive: true })
  const secret = randomBytes(48).toString('base64url')
  // 'wx' fails if another process wrote the file first; then use theirs.
  try {
    await writeFile(file, secret + '\n', { mode: 0o600, flag: 'wx' })
    return secret
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    return (await readFile(file, 'utf8')).trim()
  }
}
