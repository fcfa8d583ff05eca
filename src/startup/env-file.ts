import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseEnv } from 'node:util'
import { ConfigError } from '../config.js'

const ASSIGNMENT = /^\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_.-]*\s*=(.*)$/

/**
 * What is wrong with a .env text, by line number. util.parseEnv skips what it cannot read without a word, so a typo
 * would silently drop a setting: every line must be blank, a comment or NAME=value (quoted values may span lines).
 * A line is never quoted back: it may hold a secret.
 */
export function envFileProblems (text: string): string[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/)
  const problems: string[] = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    if (line.trim() === '' || line.trim().startsWith('#')) continue
    const value = ASSIGNMENT.exec(line)?.[1].trimStart()
    if (value === undefined) {
      problems.push(`line ${i + 1}: expected NAME=value (a variable name, "=", then its value)`)
      continue
    }
    const quote = value[0]
    if ((quote === '"' || quote === "'" || quote === '`') && !value.slice(1).includes(quote)) {
      const start = i
      while (i + 1 < lines.length && !lines[i + 1].includes(quote)) i++
      i++
      if (i >= lines.length) problems.push(`line ${start + 1}: the quoted value is never closed`)
    }
  }
  return problems
}

/**
 * Reads `.env` from the working directory (the package root under `npm run`), when there is one: its variables fill in
 * what the real environment leaves unset, so an exported variable always wins. Answers the file's path, or undefined
 * when there is none; a file that cannot be read or parsed is a ConfigError naming it and the line.
 */
export function loadEnvFile (dir: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): string | undefined {
  const path = join(dir, '.env')
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    throw new ConfigError([`${path}: cannot be read (${code ?? (error as Error).message})`])
  }
  const problems = envFileProblems(text)
  if (problems.length > 0) throw new ConfigError(problems.map(problem => `${path} ${problem}`))
  for (const [key, value] of Object.entries(parseEnv(text))) {
    if (env[key] === undefined) env[key] = value
  }
  return path
}
