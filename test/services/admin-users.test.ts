import { test } from 'tap'
import { sql } from 'drizzle-orm'
import { build, rowsOf, uniqueName } from '../helper.js'

/** A small deterministic generator, so that a failure can be reproduced. */
function generator (seed: number): () => number {
  let state = seed
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648
    return state / 2_147_483_648
  }
}

const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b))

test('adminUsers.list: when users match by username, by email or both, then paging at any size gives each match once, placed in byte order by what matched', async (t) => {
  const app = await build(t)
  const random = generator(7)
  const prefix = uniqueName('sx').toLowerCase()
  const alphabet = ['a', 'B', 'z', '0', '_', '.', '-', 'é', 'Ä']
  const word = (length: number): string => Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join('')
  const cased = (text: string): string => random() < 0.5 ? text.toUpperCase() : text

  // Usernames and emails that match, miss, or match together; emails sorted against their usernames at random.
  const people: Array<{ username: string, email: string }> = []
  for (let i = 0; i < 60; i++) {
    const byName = random() < 0.6
    const byEmail = random() < 0.6
    const username = byName ? cased(prefix) + word(1 + Math.floor(random() * 4)) : `n${i}${word(3)}${prefix}`
    const email = byEmail ? `${cased(prefix)}${word(2)}${i}@example.com` : `m${i}.${prefix}@example.com`
    people.push({ username, email })
  }
  // The page's bound: a username just before an email-only match, and an email just past its own username.
  people.push({ username: `${prefix}m`, email: `${prefix}m@example.com` }, { username: `x${prefix}`, email: `${prefix}m@example.org` })
  for (const person of people) {
    await app.database.db.execute(sql`insert into users (username, email, password_hash)
      values (${person.username}, ${person.email}, 'not a hash') on conflict do nothing`)
  }
  const rows = rowsOf<{ username: string, email: string }>(await app.database.db.execute(sql`select username, email from users`))

  for (const q of [prefix, prefix.toUpperCase(), `${prefix}a`, `${prefix}é`, `${prefix}Ä`]) {
    const low = q.toLowerCase()
    const expected = rows
      .filter(u => u.username.toLowerCase().startsWith(low) || u.email.toLowerCase().startsWith(low))
      .map(u => ({ username: u.username, key: u.username.toLowerCase().startsWith(low) ? u.username.toLowerCase() : u.email.toLowerCase() }))
      .sort((a, b) => byBytes(a.key, b.key))
      .map(u => u.username)
    t.ok(expected.length > 0 || q !== prefix, `q=${q} matches some users`)
    for (const limit of [1, 2, 3, 7, 100]) {
      const seen: string[] = []
      let cursor: string | undefined
      for (let pages = 0; pages <= expected.length + 1; pages++) {
        const page = await app.adminUsers.list({ limit, q, cursor })
        t.ok(page.items.length <= limit)
        seen.push(...page.items.map(item => item.row.username))
        if (page.nextCursor === null) break
        cursor = page.nextCursor
      }
      t.same(seen, expected, `q=${q}, limit=${limit}`)
    }
  }
})

test('adminUsers.list: when listed without q, then pages follow the byte order of the lowercased username with no repeats', async (t) => {
  const app = await build(t)
  const prefix = uniqueName('ord').toLowerCase()
  for (const username of ['Zed', 'alpha', 'Émile', 'beta', '_x', 'Ä']) {
    await app.database.db.execute(sql`insert into users (username, email, password_hash)
      values (${prefix + username}, ${`${prefix}${username}@example.com`}, 'not a hash')`)
  }
  const seen: string[] = []
  let cursor: string | undefined
  for (let pages = 0; pages < 50; pages++) {
    const page = await app.adminUsers.list({ limit: 3, cursor })
    seen.push(...page.items.map(item => item.row.username.toLowerCase()))
    if (page.nextCursor === null) break
    cursor = page.nextCursor
  }
  t.same(seen, [...seen].sort(byBytes), 'byte order')
  t.equal(new Set(seen).size, seen.length, 'no repeats')
  t.same(seen.filter(name => name.startsWith(prefix)), ['Zed', 'alpha', 'Émile', 'beta', '_x', 'Ä'].map(n => (prefix + n).toLowerCase()).sort(byBytes))
})
