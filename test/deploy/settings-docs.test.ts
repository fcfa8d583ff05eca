import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'tap'
import { REPO_ROOT, SETTINGS, settingDefault, sorted } from '../helper.js'

const duplicates = (values: string[]): string[] => values.filter((value, i) => values.indexOf(value) !== i)

function readmeSettings (readme: string): Array<{ key: string, default: string }> {
  const start = readme.indexOf('\n## Settings\n')
  if (start === -1) throw new Error('README has no "## Settings" section')
  const end = readme.indexOf('\n## ', start + 1)
  const section = readme.slice(start, end === -1 ? undefined : end)
  const rows: Array<{ key: string, default: string }> = []
  for (const line of section.split('\n')) {
    const match = /^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|/.exec(line)
    if (match !== null) rows.push({ key: match[1], default: match[2].trim().replace(/^`(.*)`$/, '$1') })
  }
  return rows
}

const schemaDefault = (key: string): string => settingDefault(key) === undefined ? 'unset' : String(settingDefault(key))

test('README: when the settings table is read, then it lists exactly the ConfigSchema keys with their defaults', async (t) => {
  const rows = readmeSettings(await readFile(join(REPO_ROOT, 'README.md'), 'utf8'))
  const keys = rows.map(r => r.key)
  t.same(duplicates(keys), [], 'no setting twice')
  t.same(sorted(keys), SETTINGS, 'the same keys as the schema')
  for (const row of rows) t.equal(row.default, schemaDefault(row.key), `${row.key}: default`)
  t.ok(rows.some(r => r.key === 'SHUTDOWN_GRACE_MS' && r.default === '10000'), 'rows are recognised')
})

test('.env.example: when its variables (set or commented out) are read, then they are exactly the ConfigSchema keys', async (t) => {
  const text = await readFile(join(REPO_ROOT, '.env.example'), 'utf8')
  const keys = [...text.matchAll(/^#? ?([A-Z][A-Z0-9_]*)=/gm)].map(m => m[1])
  t.same(duplicates(keys), [], 'no setting twice')
  t.same(sorted(keys), SETTINGS, 'the same keys as the schema')
})
