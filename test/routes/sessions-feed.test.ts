import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { sql } from 'drizzle-orm'
import {
  as, assertNotAuthenticated, bearer, build, eventually, grantRole, loginPair, register, startPostgresCluster, TIMING_MARGIN_MS, twoInstances,
  type Registered, type TokenPair
} from '../helper.js'

const FEED_ROLE = 'feed-reader'

/** A user whose role grants `sessions:ended`, and a token of theirs: how the feed is read before client credentials. */
async function feedReader (app: FastifyInstance): Promise<string> {
  await app.database.db.execute(sql`insert into roles (name, scopes) values (${FEED_ROLE}, '{sessions:ended}') on conflict do nothing`)
  const user = await register(app)
  await grantRole(app, user.id, FEED_ROLE)
  return (await loginPair(app, user)).access
}

async function logout (app: FastifyInstance, session: TokenPair): Promise<void> {
  const res = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(session.access) })
  if (res.statusCode !== 204) throw new Error(`logout: ${res.statusCode} ${res.body}`)
}

/** A logout over the network, as a storm of them arrives: on a connection of its own. */
async function logoutOverHttp (baseUrl: string, session: TokenPair): Promise<void> {
  const req = request(`${baseUrl}/auth/logout`, { method: 'POST', agent: false, headers: bearer(session.access) })
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  res.resume()
  if (res.statusCode !== 204) throw new Error(`logout: ${res.statusCode ?? 0}`)
}

async function sessionsOf (app: FastifyInstance, user: Registered, count: number): Promise<TokenPair[]> {
  const pairs: TokenPair[] = []
  // In groups, well inside the password hash queue (PASSWORD_HASH_QUEUE_MAX); logins under way count against the
  // account's login throttle until they succeed, so an app logging in many at once turns it off.
  for (let i = 0; i < count; i += 8) pairs.push(...await Promise.all(Array.from({ length: Math.min(8, count - i) }, async () => await loginPair(app, user))))
  return pairs
}

async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
}

interface FeedEvent { id?: string, event: string, data: string }

/** One connection to the stream, read as an EventSource would: its events, the ids it was told of and when. */
interface Feed {
  status: number
  headers: IncomingHttpHeaders
  events: FeedEvent[]
  seenAt: Map<string, number>
  lastId: () => string | undefined
  synced: () => boolean
  /** Resolves when the stream ends, from either side. */
  ended: Promise<void>
  abort: () => void
}

function parseEvent (block: string): FeedEvent {
  const event: FeedEvent = { event: 'message', data: '' }
  for (const line of block.split('\n')) {
    const colon = line.indexOf(':')
    const [field, value] = colon < 0 ? [line, ''] : [line.slice(0, colon), line.slice(colon + 1).trimStart()]
    if (field === 'id') event.id = value
    else if (field === 'event') event.event = value
    else if (field === 'data') event.data = value
    else if (field === '') event.event = 'comment'
    else if (field === 'retry') event.event = 'retry'
  }
  return event
}

/** A subscriber on a connection of its own (no pooled sockets that a closing server would wait for). */
async function subscribe (baseUrl: string, token: string, headers: Record<string, string> = {}): Promise<Feed> {
  const req = request(`${baseUrl}/sessions/ended/stream`, { agent: false, headers: { ...bearer(token), ...headers } })
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  const events: FeedEvent[] = []
  const seenAt = new Map<string, number>()
  let buffer = ''
  res.setEncoding('utf8')
  res.on('data', (chunk: string) => {
    buffer += chunk
    let end: number
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = parseEvent(buffer.slice(0, end))
      buffer = buffer.slice(end + 2)
      events.push(event)
      if (event.event !== 'ended') continue
      for (const id of (JSON.parse(event.data) as { ids: string[] }).ids) if (!seenAt.has(id)) seenAt.set(id, performance.now())
    }
  })
  return {
    status: res.statusCode ?? 0,
    headers: res.headers,
    events,
    seenAt,
    lastId: () => events.findLast(e => e.id !== undefined)?.id,
    synced: () => events.some(e => e.event === 'synced'),
    ended: new Promise(resolve => res.once('close', resolve)),
    abort: () => { req.destroy() }
  }
}

test('GET /sessions/ended: when no token, then 401; a token without sessions:ended, then 403; the same for the stream', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const plain = await loginPair(app, user)
  for (const url of ['/sessions/ended', '/sessions/ended/stream']) {
    assertNotAuthenticated(t, await app.inject({ url }), url)
    const res = await app.inject(as(plain.access, { url }))
    t.equal(res.statusCode, 403, `${url}: 403`)
    t.equal(res.json().code, 'insufficient_scope')
    t.equal(res.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="sessions:ended"')
  }
  const token = await feedReader(app)
  t.equal((await app.inject(as(token, { url: '/sessions/ended?since=yesterday' }))).statusCode, 400, 'a cursor is digits')
})

test('GET /sessions/ended: when sessions end and a client is deleted, then the list since a cursor holds them, and not ends older than the cursor or the window', async (t) => {
  const app = await build(t)
  const token = await feedReader(app)
  const user = await register(app)
  const [first, second] = await sessionsOf(app, user, 2)
  const db = app.database.db
  // Ended before the cursor (30 s ago), and before the window (ACCESS_TOKEN_TTL + 60 s ago): no token of theirs can matter.
  const old = randomUUID()
  const ancient = randomUUID()
  await db.execute(sql`insert into sessions (id, user_id, expires_at, ended_at) values
    (${old}::uuid, ${user.id}::uuid, now() + interval '1 day', now() - interval '30 seconds'),
    (${ancient}::uuid, ${user.id}::uuid, now() + interval '1 day', now() - make_interval(secs => ${app.config.ACCESS_TOKEN_TTL + 120}))`)

  await logout(app, first)
  const whole = await app.inject(as(token, { url: '/sessions/ended' }))
  t.equal(whole.statusCode, 200)
  const body = whole.json() as { ended: Array<{ id: string, ended_at: string }>, cursor: string }
  const ids = body.ended.map(e => e.id)
  t.ok(ids.includes(first.sid) && ids.includes(old), 'the whole window: the logout and the end of 30 s ago')
  t.notOk(ids.includes(ancient), 'not an end older than the window')
  t.same(body.ended.map(e => e.ended_at), body.ended.map(e => e.ended_at).sort(), 'oldest first')
  t.equal(body.cursor, String(Date.parse(body.ended.at(-1)?.ended_at ?? '')), 'the cursor is the newest end')

  await logout(app, second)
  const client = randomUUID()
  await db.execute(sql`insert into service_clients (id, name, secret_hash, deleted_at) values (${client}::uuid, 'gone', 'x', now())`)
  const next = (await app.inject(as(token, { url: `/sessions/ended?since=${body.cursor}` }))).json() as typeof body
  const nextIds = next.ended.map(e => e.id)
  t.ok(nextIds.includes(second.sid), 'the session ended after the cursor')
  t.ok(nextIds.includes(client), 'a deleted service client, whose tokens carry its id as sid')
  t.notOk(nextIds.includes(old), 'not an end long before the cursor')
  t.ok(Number(next.cursor) >= Number(body.cursor), 'the cursor moves forward')

  const later = String(Date.now() + 60_000)
  t.same((await app.inject(as(token, { url: `/sessions/ended?since=${later}` }))).json(), { ended: [], cursor: later }, 'nothing since a later cursor, which stays')
})

test('GET /sessions/ended/stream: when connected, then the ends so far, synced, live ends as they happen; the stream ends with its own session', async (t) => {
  const app = await build(t)
  const url = await listen(app)
  const readerUser = await register(app)
  await app.database.db.execute(sql`insert into roles (name, scopes) values (${FEED_ROLE}, '{sessions:ended}') on conflict do nothing`)
  await grantRole(app, readerUser.id, FEED_ROLE)
  const reader = await loginPair(app, readerUser)
  const user = await register(app)
  const [before, after] = await sessionsOf(app, user, 2)
  await logout(app, before)

  const feed = await subscribe(url, reader.access)
  t.equal(feed.status, 200)
  t.match(feed.headers['content-type'], /^text\/event-stream/)
  t.equal(feed.headers['cache-control'], 'no-store')
  t.equal(feed.headers['x-accel-buffering'], 'no')
  t.ok(feed.headers['x-request-id'], 'the request id is echoed, as on every answer')
  await eventually(feed.synced, { timeoutMs: 5000, what: 'synced' })
  t.equal(feed.events[0].event, 'retry')
  const synced = feed.events.findIndex(e => e.event === 'synced')
  t.ok(feed.events.slice(0, synced).some(e => e.event === 'ended' && e.data.includes(before.sid)), 'the replay, before synced, holds the earlier end')
  t.match(feed.events[synced], { event: 'synced', data: '{}', id: /^\d+$/ })

  await logout(app, after)
  await eventually(() => feed.seenAt.has(after.sid), { timeoutMs: 1000 + TIMING_MARGIN_MS, what: 'the live end' })
  const live = feed.events.findLast(e => e.event === 'ended') as FeedEvent
  const data = JSON.parse(live.data) as { ids: string[], ended_at: string }
  t.same(data.ids, [after.sid])
  t.equal(live.id, String(Date.parse(data.ended_at)), 'its id is the cursor: the time of the end')
  t.ok(Number(live.id) >= Number(feed.events[synced].id), 'cursors only move forward')

  // The subscriber's own session ends: it is told, and the stream ends (its token is refused from now on).
  await logout(app, reader)
  await feed.ended
  t.ok(feed.seenAt.has(reader.sid), 'its own end was sent before the stream ended')
})

test('GET /sessions/ended/stream: when 50 subscribers listen over HTTP, then each sees a logout within a second', async (t) => {
  const app = await build(t)
  const url = await listen(app)
  const token = await feedReader(app)
  const feeds = await Promise.all(Array.from({ length: 50 }, async () => await subscribe(url, token)))
  t.teardown(() => { for (const feed of feeds) feed.abort() })
  t.same(feeds.map(f => f.status), feeds.map(() => 200))
  await eventually(() => feeds.every(f => f.synced()), { timeoutMs: 10_000, what: 'every subscriber synced' })
  const user = await register(app)
  const [session] = await sessionsOf(app, user, 1)

  const started = performance.now()
  await logout(app, session)
  await eventually(() => feeds.every(f => f.seenAt.has(session.sid)), { timeoutMs: 1000 + TIMING_MARGIN_MS, what: 'the end at every subscriber' })
  const slowest = Math.max(...feeds.map(f => (f.seenAt.get(session.sid) as number) - started))
  t.ok(slowest <= 1000 + TIMING_MARGIN_MS, `the slowest of 50 subscribers saw it after ${Math.round(slowest)} ms`)
})

test('GET /sessions/ended/stream: when a session ends on instance A, then a subscriber of instance B is told within a second', async (t) => {
  const [a, b] = await twoInstances(t)
  const url = await listen(b)
  const feed = await subscribe(url, await feedReader(a))
  t.teardown(feed.abort)
  await eventually(feed.synced, { timeoutMs: 5000, what: 'synced' })
  const user = await register(a)
  const [session] = await sessionsOf(a, user, 1)
  await logout(a, session)
  await eventually(() => feed.seenAt.has(session.sid), { timeoutMs: 1000 + TIMING_MARGIN_MS, what: 'the end of a session of A, at B\'s subscriber' })
})

test('GET /sessions/ended/stream: when a subscriber leaves during a storm of 200 logouts and comes back with Last-Event-ID, then it holds every ended session', async (t) => {
  const app = await build(t, { LOGIN_THROTTLE_MAX_FAILURES: 0 })
  const url = await listen(app)
  const token = await feedReader(app)
  const user = await register(app)
  const sessions = await sessionsOf(app, user, 200)

  const first = await subscribe(url, token)
  await eventually(first.synced, { timeoutMs: 5000, what: 'synced' })
  let second: Feed | undefined
  let next = 0
  let loggedOut = 0
  const storm = async (): Promise<void> => {
    while (next < sessions.length) {
      await logoutOverHttp(url, sessions[next++])
      loggedOut += 1
      if (loggedOut === 60) first.abort()
      if (loggedOut === 120) second = await subscribe(url, token, { 'last-event-id': first.lastId() as string })
    }
  }
  await Promise.all([storm(), storm(), storm(), storm()])
  t.teardown(() => second?.abort())
  const seenFirst = sessions.filter(s => first.seenAt.has(s.sid)).length
  t.ok(seenFirst > 0 && seenFirst < sessions.length, `the first connection saw ${seenFirst} of the ${sessions.length} ends before it left`)
  const held = (): Set<string> => new Set([...first.seenAt.keys(), ...(second?.seenAt.keys() ?? [])])
  await eventually(() => sessions.every(s => held().has(s.sid)), {
    timeoutMs: 5000,
    what: () => `every ended session (${sessions.filter(s => !held().has(s.sid)).length} missing)`
  })
  const resumed = second as Feed
  t.ok(resumed.synced(), 'the resumed stream synced')
  t.ok(resumed.events.some(e => e.event === 'ended'), 'and replayed what was missed')
})

test('GET /sessions/ended/stream: when SESSION_FEED_MAX_SUBSCRIBERS streams are open, then 503 feed_full with Retry-After', async (t) => {
  const app = await build(t, { SESSION_FEED_MAX_SUBSCRIBERS: 2 })
  const url = await listen(app)
  const token = await feedReader(app)
  const feeds = [await subscribe(url, token), await subscribe(url, token)]
  t.teardown(() => { for (const feed of feeds) feed.abort() })
  const refused = await app.inject(as(token, { url: '/sessions/ended/stream' }))
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '5')
  t.equal(refused.json().code, 'feed_full')
  feeds[0].abort()
  await eventually(async () => {
    const feed = await subscribe(url, token)
    feeds.push(feed)
    return feed.status === 200
  }, { timeoutMs: 5000, what: 'a stream once one has left' })
  t.equal(feeds.at(-1)?.status, 200, 'a place freed by a subscriber that left is taken again')
})

test('app.close(): when streams are open, then they end and the app closes promptly', async (t) => {
  const app = await build(t)
  const url = await listen(app)
  const token = await feedReader(app)
  const feeds = await Promise.all([1, 2, 3].map(async () => await subscribe(url, token)))
  await eventually(() => feeds.every(f => f.synced()), { timeoutMs: 5000, what: 'synced' })
  const started = performance.now()
  await app.close()
  await Promise.all(feeds.map(async f => await f.ended))
  const took = performance.now() - started
  t.ok(took < 1000 + TIMING_MARGIN_MS, `closed with 3 open streams in ${Math.round(took)} ms`)
})

test('GET /sessions/ended/stream: when the heartbeat comes while the replay is still being read (PostgreSQL frozen past it), then the stream still opens as an event stream and syncs', async (t) => {
  const cluster = await startPostgresCluster(t)
  // Reads wait longer than the freeze, and the session sync does not query in the meantime.
  const app = await build(t, { DATABASE_URL: cluster.url, DATABASE_TIMEOUT_MS: 15000, SESSION_SYNC_INTERVAL_MS: 60000, SESSION_SYNC_MAX_STALENESS_SECONDS: 300 })
  t.teardown(() => { cluster.thaw() })
  const url = await listen(app)
  const reader = await feedReader(app)
  await cluster.freeze()
  const subscribing = subscribe(url, reader)
  // Longer than the heartbeat's interval (5 s): it ticks while the replay waits for the database.
  await new Promise(resolve => setTimeout(resolve, 6000))
  cluster.thaw()
  const feed = await subscribing
  t.teardown(() => { feed.abort() })
  t.equal(feed.status, 200)
  t.match(feed.headers['content-type'], /^text\/event-stream/, 'the stream\'s own headers, not default ones a ping sent first')
  await eventually(() => feed.synced(), { timeoutMs: 5000, what: 'the synced event' })
  t.ok(feed.synced(), 'synced')
})
