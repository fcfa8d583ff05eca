import { randomUUID } from 'node:crypto'
import { test, type Test } from 'tap'
import { sql } from 'drizzle-orm'
import { openDatabase, type DatabaseHandle } from '../../src/db/client.js'
import { EndedSessions } from '../../src/services/ended-sessions.js'
import { SESSION_ENDED_CHANNEL, SessionSync } from '../../src/services/session-sync.js'
import { assertSessionEnded, bearer, embeddedDatabase, eventually, loginPair, me, register, rowsOf, sorted, testDatabaseUrl, TIMING_MARGIN_MS, twoInstances } from '../helper.js'

/** A migrated database for this test alone on the TEST_DATABASE_URL server, or the process's embedded one. */
async function migratedDatabase (t: Test): Promise<DatabaseHandle> {
  const url = await testDatabaseUrl(t)
  if (url === undefined) return await embeddedDatabase()
  const handle = await openDatabase({ url })
  t.teardown(handle.close)
  await handle.migrate()
  return handle
}

test('session sync: when 250 sessions of a user end at once, then two notifications carry them all and the other instance refuses every one', async (t) => {
  const [a, b] = await twoInstances(t)
  const user = await register(a)
  await a.database.db.execute(sql`insert into sessions (user_id, expires_at)
    select ${user.id}::uuid, now() + interval '1 day' from generate_series(1, 250)`)
  const payloads: string[] = []
  const unlisten = await a.database.listen(SESSION_ENDED_CHANNEL, (payload) => { payloads.push(payload) })
  t.teardown(unlisten)

  const ended = await a.sessions.end({ userId: user.id }, 'test')
  t.equal(ended.length, 250)
  t.ok(ended.every(id => a.endedSessions.has(id)), 'refused at once on the instance that ended them')
  await eventually(() => payloads.length >= 2, { timeoutMs: 5000, what: 'two notifications' })
  await eventually(() => ended.every(id => b.endedSessions.has(id)), { timeoutMs: 5000, what: 'every ended session on the other instance' })
  t.same(payloads.map(p => p.split(',').length), [200, 50], 'one notification per batch of 200')
  t.same(payloads.flatMap(p => p.split(',')).sort(), [...ended].sort())
})

test('session sync: when 50 sessions end in one tick, then one NOTIFY carries them and every instance refuses them', async (t) => {
  // B re-reads once a minute: what it learns within the test, it learns from the notification.
  const [a, b] = await twoInstances(t, {}, { SESSION_SYNC_INTERVAL_MS: 60000, SESSION_SYNC_MAX_STALENESS_SECONDS: 300 })
  const user = await register(a)
  const { access } = await loginPair(a, user)
  await a.database.db.execute(sql`insert into sessions (user_id, expires_at)
    select ${user.id}::uuid, now() + interval '1 day' from generate_series(1, 49)`)
  const payloads: string[] = []
  const unlisten = await a.database.listen(SESSION_ENDED_CHANNEL, (payload) => { payloads.push(payload) })
  t.teardown(unlisten)

  // Ended by one statement, then announced one by one in the same tick: as 50 logouts whose updates came back together.
  const ended = rowsOf<{ id: string, ended_at: string | Date }>(await a.database.db.execute(sql`update sessions
    set ended_at = now(), end_reason = 'test' where user_id = ${user.id}::uuid returning id, ended_at`))
  t.equal(ended.length, 50)
  await Promise.all(ended.map(async (row) => { await a.sessions.announce([{ id: row.id, endedAt: new Date(row.ended_at) }]) }))
  const ids = sorted(ended.map(row => row.id))
  await eventually(() => payloads.flatMap(p => p.split(',')).length >= 50, { timeoutMs: 5000, what: 'the ended sessions notified' })
  t.equal(payloads.length, 1, 'one notification')
  t.same(sorted(payloads[0].split(',')), ids, 'carrying every ended session')
  t.ok(ids.every(id => a.endedSessions.has(id)), 'refused at once on the instance that ended them')
  await eventually(() => ids.every(id => b.endedSessions.has(id)), { timeoutMs: 5000, what: 'every ended session on the other instance' })
  assertSessionEnded(t, await me(a, access), 'the logged-in session on A')
  assertSessionEnded(t, await me(b, access), 'the logged-in session on B')
})

test('session sync: when stopped, then it no longer listens; a notification with junk in it adds only the well-formed ids', async (t) => {
  const handle = await migratedDatabase(t)
  const ended = new EndedSessions(60_000)
  const errors: unknown[] = []
  const sync = new SessionSync({ db: handle.db, listen: handle.listen, ended, windowMs: 60_000, intervalMs: 60_000, onError: (e) => { errors.push(e) } })
  await sync.start()
  t.teardown(async () => { await sync.stop() })

  // A second listener of the test's own tells when a notification has been delivered.
  const seen: string[] = []
  const unlisten = await handle.listen(SESSION_ENDED_CHANNEL, (payload) => { seen.push(payload) })
  t.teardown(unlisten)
  const notify = async (payload: string): Promise<void> => {
    await handle.db.execute(sql`select pg_notify(${SESSION_ENDED_CHANNEL}, ${payload})`)
    await eventually(() => seen.includes(payload), { timeoutMs: 5000, what: `the notification ${payload}` })
  }

  // The shared embedded database may hold other tests' recently ended sessions, which start() has read.
  const before = ended.size
  const good = randomUUID()
  await notify(`${good},not-a-uuid,,${'x'.repeat(40)}`)
  t.ok(ended.has(good))
  t.equal(ended.size, before + 1, 'nothing else was added')

  await sync.stop()
  const late = randomUUID()
  await notify(late)
  t.notOk(ended.has(late), 'after stop(), notifications are not followed')
  t.same(errors, [])
})

test('session sync: when a session ends in SQL with no notification, then reread() finds it', async (t) => {
  const handle = await migratedDatabase(t)
  const ended = new EndedSessions(60_000)
  const sync = new SessionSync({ db: handle.db, listen: handle.listen, ended, windowMs: 60_000, intervalMs: 60_000, onError: () => {} })
  const [user] = rowsOf<{ id: string }>(await handle.db.execute(sql`insert into users (username, email, password_hash)
    values (${`sync_${process.pid}_${Date.now()}`}, ${`sync_${process.pid}_${Date.now()}@example.com`}, 'x') returning id`))
  const [session] = rowsOf<{ id: string }>(await handle.db.execute(sql`insert into sessions (user_id, expires_at, ended_at)
    values (${user.id}::uuid, now() + interval '1 day', now()) returning id`))
  t.notOk(ended.has(session.id))
  await sync.reread()
  t.ok(ended.has(session.id))
})

test('session sync: when a user is deleted in SQL, then the other instance refuses their access token within a second', async (t) => {
  const [a, b] = await twoInstances(t)
  const user = await register(a)
  const login = await a.inject({ method: 'POST', url: '/auth/token', payload: { username: user.username, password: user.password } })
  const token = login.json().access_token as string
  const sessionsOnB = async (): Promise<number> => (await b.inject({ method: 'GET', url: '/users/me/sessions', headers: bearer(token) })).statusCode
  t.equal(await sessionsOnB(), 200, 'valid before')
  await a.database.db.execute(sql`delete from users where id = ${user.id}::uuid`)
  // The bound is the behaviour: within a second, plus the margin a busy machine needs.
  await eventually(async () => await sessionsOnB() === 401,
    { timeoutMs: 1000 + TIMING_MARGIN_MS, what: 'the other instance refusing the deleted user\'s token' })
})
