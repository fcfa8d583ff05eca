import { test } from 'tap'
import { eq, sql } from 'drizzle-orm'
import { sessions } from '../../src/db/schema.js'
import { REFRESH_REFUSED, TIMING_MARGIN_MS, assertRefreshRefused, assertSessionEnded, bearer, eventually, loginPair, me, refresh, register, twoInstances } from '../helper.js'

// In these tests the time bound is the behaviour: what the service promises, plus TIMING_MARGIN_MS for a busy machine.
const ONE_SECOND = 1000
const SYNC_INTERVAL_MS = 200

test('sessions across instances: when a session ends on instance A, then instance B refuses its access token within a second', async (t) => {
  const [a, b] = await twoInstances(t)
  const user = await register(a)
  const pair = await loginPair(a, user)
  t.equal((await me(b, pair.access)).statusCode, 200, 'B accepts A\'s access token')

  t.equal((await a.inject({ method: 'POST', url: '/auth/logout', headers: bearer(pair.access) })).statusCode, 204)
  await eventually(async () => (await me(b, pair.access)).statusCode === 401, { timeoutMs: ONE_SECOND + TIMING_MARGIN_MS, what: 'B refusing the token' })
  assertSessionEnded(t, await me(b, pair.access), 'on B')
  assertRefreshRefused(t, await refresh(b, pair.refresh), REFRESH_REFUSED, 'refresh on B')
})

test('sessions across instances: when B re-reads only once a minute, then the notification alone makes B refuse the token within a second', async (t) => {
  const [a, b] = await twoInstances(t, {}, { SESSION_SYNC_INTERVAL_MS: 60000, SESSION_SYNC_MAX_STALENESS_SECONDS: 300 })
  const user = await register(a)
  const pair = await loginPair(a, user)
  t.equal((await me(b, pair.access)).statusCode, 200, 'B accepts A\'s access token')

  t.equal((await a.inject({ method: 'DELETE', url: '/users/me/sessions', headers: bearer(pair.access) })).statusCode, 204)
  // Still far below the minute before B's first re-read: only the notification can have told B.
  await eventually(async () => (await me(b, pair.access)).statusCode === 401, { timeoutMs: ONE_SECOND + TIMING_MARGIN_MS, what: 'B refusing the token before any re-read' })
  assertSessionEnded(t, await me(b, pair.access), 'on B')
})

test('sessions across instances: when a session ends without a notification, then B\'s re-read refuses its token within SESSION_SYNC_INTERVAL_MS', async (t) => {
  const [a, b] = await twoInstances(t, {}, { SESSION_SYNC_INTERVAL_MS: SYNC_INTERVAL_MS })
  const user = await register(a)
  const pair = await loginPair(a, user)
  t.equal((await me(b, pair.access)).statusCode, 200, 'B accepts the token before the session ends')

  // Straight to the database: no NOTIFY, as when a LISTEN connection was down.
  const updated = await a.database.db.update(sessions)
    .set({ endedAt: sql`now()`, endReason: 'test' })
    .where(eq(sessions.id, pair.sid)).returning({ id: sessions.id })
  t.equal(updated.length, 1)
  await eventually(async () => (await me(b, pair.access)).statusCode === 401, { timeoutMs: SYNC_INTERVAL_MS + TIMING_MARGIN_MS, what: 'B\'s re-read refusing the token' })
  assertSessionEnded(t, await me(b, pair.access), 'on B')
})
