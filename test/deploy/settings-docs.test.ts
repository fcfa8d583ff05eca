import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'tap'
import { DEVELOPMENT_DEFAULTS } from '../../src/config.js'
import { envFileProblems } from '../../src/startup/env-file.js'
import { REPO_ROOT, SETTINGS, settingDefault, sorted } from '../helper.js'

const duplicates = (values: string[]): string[] => values.filter((value, i) => values.indexOf(value) !== i)

function documentedSettings (doc: string): Array<{ key: string, default: string, line: string }> {
  const start = doc.indexOf('\n## Settings\n')
  if (start === -1) throw new Error('docs/configuration.md has no "## Settings" section')
  const end = doc.indexOf('\n## ', start + 1)
  const section = doc.slice(start, end === -1 ? undefined : end)
  const rows: Array<{ key: string, default: string, line: string }> = []
  for (const line of section.split('\n')) {
    const match = /^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|/.exec(line)
    if (match !== null) rows.push({ key: match[1], default: match[2].trim().replace(/^`(.*)`$/, '$1'), line })
  }
  return rows
}

const schemaDefault = (key: string): string => settingDefault(key) === undefined ? 'unset' : String(settingDefault(key))

test('docs/configuration.md: when the settings table is read, then it lists exactly the ConfigSchema keys with their defaults', async (t) => {
  const rows = documentedSettings(await readFile(join(REPO_ROOT, 'docs', 'configuration.md'), 'utf8'))
  const keys = rows.map(r => r.key)
  t.same(duplicates(keys), [], 'no setting twice')
  t.same(sorted(keys), SETTINGS, 'the same keys as the schema')
  for (const row of rows) t.equal(row.default, schemaDefault(row.key), `${row.key}: default`)
  t.ok(rows.some(r => r.key === 'SHUTDOWN_GRACE_MS' && r.default === '10000'), 'rows are recognised')
  // The development defaults are documented in their rows, as "development: `value`", and nowhere else.
  for (const row of rows) {
    const development = DEVELOPMENT_DEFAULTS[row.key as keyof typeof DEVELOPMENT_DEFAULTS]
    if (development === undefined) t.notMatch(row.line, /development: `/, `${row.key}: no development default claimed`)
    else t.match(row.line, `development: \`${String(development)}\``, `${row.key}: its development default`)
  }
})

test('.env.example: when its variables (set or commented out) are read, then they are exactly the ConfigSchema keys', async (t) => {
  const text = await readFile(join(REPO_ROOT, '.env.example'), 'utf8')
  const keys = [...text.matchAll(/^#? ?([A-Z][A-Z0-9_]*)=/gm)].map(m => m[1])
  t.same(duplicates(keys), [], 'no setting twice')
  t.same(sorted(keys), SETTINGS, 'the same keys as the schema')
  // Copied to .env as it is, it must load (the loader refuses lines it cannot read).
  t.same(envFileProblems(text), [], 'every line is one the .env loader reads')
})
