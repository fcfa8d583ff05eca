import { randomUUID } from 'node:crypto'
import { test } from 'tap'
import { EndedSessions } from '../../src/services/ended-sessions.js'

/** What `uuid_send(id) || int8send(ms)` gives, row after row. */
function packed (rows: Array<{ id: string, endedAt: number }>): Uint8Array {
  const buffer = Buffer.alloc(rows.length * 24)
  rows.forEach((row, i) => {
    Buffer.from(row.id.replaceAll('-', ''), 'hex').copy(buffer, i * 24)
    buffer.writeBigInt64BE(BigInt(row.endedAt), i * 24 + 16)
  })
  return buffer
}

test('ended sessions: when 100,000 sessions end, then each is listed and no other id is, through the table\'s growth', async (t) => {
  const ended = new EndedSessions(60_000)
  const ids = Array.from({ length: 100_000 }, () => randomUUID())
  let newOnes = 0
  for (const id of ids) if (ended.add(id)) newOnes++
  t.equal(newOnes, ids.length, 'every one was new')
  t.equal(ended.size, ids.length)
  t.ok(ids.every(id => ended.has(id)), 'every one is listed')
  t.ok(ids.every(id => !ended.add(id)), 'listing one again is not new')
  t.equal(ended.size, ids.length, 'nor does it grow the set')
  const strangers = Array.from({ length: 100_000 }, () => randomUUID())
  t.equal(strangers.filter(id => ended.has(id)).length, 0, 'no id that did not end is listed')
  t.ok(ended.has(ids[0].toUpperCase()), 'an id in capitals is the same id')
})

test('ended sessions: when their time passes, then prune forgets them and keeps the others, and the table stays usable', async (t) => {
  const ended = new EndedSessions(60_000)
  const now = Date.now()
  const old = Array.from({ length: 5000 }, () => randomUUID())
  const recent = Array.from({ length: 5000 }, () => randomUUID())
  for (const id of old) ended.add(id, new Date(now - 50_000))
  for (const id of recent) ended.add(id, new Date(now))
  ended.prune(now + 20_000)
  t.equal(ended.size, recent.length, 'the old ones are gone')
  t.ok(old.every(id => !ended.has(id)), 'none of the old ones is listed')
  t.ok(recent.every(id => ended.has(id)), 'every recent one is')
  // Removed slots are reused and rebuilt away: many rounds of ends and prunes keep it exact.
  let live: string[] = recent
  for (let round = 1; round <= 20; round++) {
    const next = Array.from({ length: 3000 }, () => randomUUID())
    for (const id of next) ended.add(id, new Date(now + round * 100_000))
    ended.prune(now + round * 100_000 + 1)
    live = next
    t.equal(ended.size, next.length, `round ${round}: only the newest ends are left`)
  }
  t.ok(live.every(id => ended.has(id)), 'the last round\'s ends are listed')
  t.notOk(ended.add(randomUUID(), new Date(now - 120_000)), 'an end older than the window is not listed at all')
})

test('ended sessions: when an id is not a UUID, then it is listed and forgotten all the same', async (t) => {
  const ended = new EndedSessions(60_000)
  t.ok(ended.add('client-42'))
  t.ok(ended.has('client-42'))
  t.notOk(ended.has('client-43'))
  t.equal(ended.size, 1)
  ended.prune(Date.now() + 120_000)
  t.notOk(ended.has('client-42'))
  t.equal(ended.size, 0)
})

test('ended sessions: when ends arrive packed, then they are listed, listeners get each new id once, and the newest end is answered', async (t) => {
  const ended = new EndedSessions(60_000)
  const now = Date.now()
  const rows = Array.from({ length: 1000 }, (_, i) => ({ id: randomUUID(), endedAt: now - 1000 + i }))
  ended.add(rows[0].id, new Date(rows[0].endedAt))
  const told: Array<{ id: string, endedAt: number }> = []
  ended.onEnded((id, endedAt) => { told.push({ id, endedAt: endedAt.getTime() }) })
  const tooOld = { id: randomUUID(), endedAt: now - 120_000 }
  t.equal(ended.addPacked(packed([...rows, tooOld])), rows[rows.length - 1].endedAt, 'the newest end')
  t.ok(rows.every(r => ended.has(r.id)), 'every packed end is listed')
  t.notOk(ended.has(tooOld.id), 'an end older than the window is not')
  t.same(told, rows.slice(1), 'listeners were told of the new ones, with their ids and times, in order')
  t.equal(ended.addPacked(new Uint8Array(0)), 0, 'nothing packed: no newest end')
})
