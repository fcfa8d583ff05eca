// The logout storm: sessions written by SQL (no argon2 per session), logged out on one instance as fast as it takes
// them, while a second instance on the same database must refuse each of them within a second and pass each on to 50
// subscribers of its ended-session feed (GET /sessions/ended/stream). Times are taken in this process, from the
// logout's response to the id's arrival: the feed of the second instance is fed by its set of ended sessions, so an
// id arriving there was refused there (a sample of tokens is also polled on it with real requests, to confirm).
import { randomBytes, randomUUID } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { Agent, request as httpRequest, type ClientRequest, type OutgoingHttpHeaders } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import { SESSION_ENDED_CHANNEL } from '../../src/services/session-sync.js'
import { hashRefreshToken } from '../../src/services/sessions.js'
import { startServer, stopServer, waitReady, type Server } from './children.js'
import { checkInterrupted, interrupted } from './interruption.js'
import { clockTicks } from './load.js'
import { log } from './progress.js'

export interface LogoutStorm {
  sessions: number
  seconds: number
  logoutsPerSecond: number
  logoutErrors: number
  refusedOnSecond: { p50Ms: number, p99Ms: number, maxMs: number, missing: number }
  feed: { subscribers: number, p50Ms: number, p99Ms: number, maxMs: number, missing: number }
  notes: string[]
}

/** Logouts in flight at once. */
const CONCURRENCY = 32
/** Refresh-token grants in flight at once while the sessions' access tokens are fetched. */
const SETUP_CONCURRENCY = 20
const SUBSCRIBERS = 50
/** Tokens checked with real requests on the second instance: before the storm (accepted) and after it (refused). */
const SAMPLE = 50
const POLL_MS = 10
/** How long after the last logout the ids still missing are waited for. */
const GIVE_UP_MS = 10_000
const REQUEST_TIMEOUT_MS = 10_000
/**
 * How long a subscriber may take to get its synced event before it reconnects, and how often it may: half the feed's
 * 5 s heartbeat, so that a reconnection does not meet the heartbeat in the phase that left it stuck (see below).
 */
const SYNCED_MS = 2500
const SYNC_ATTEMPTS = 4

interface Answer { status: number, body: string, at: number }

/** One request; `at` is when its response had been read in full. */
async function send (agent: Agent, base: string, method: string, path: string, headers: OutgoingHttpHeaders, body?: string): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, base), { method, agent, headers: { ...headers, 'content-length': Buffer.byteLength(body ?? '') } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: text, at: performance.now() }) })
      res.on('error', reject)
    })
    req.setTimeout(REQUEST_TIMEOUT_MS, () => { req.destroy(new Error(`${method} ${path}: no answer within ${REQUEST_TIMEOUT_MS} ms`)) })
    req.on('error', reject)
    req.end(body)
  })
}

async function sendJson<T> (agent: Agent, base: string, path: string, expected: number, body: unknown, headers: OutgoingHttpHeaders = {}): Promise<T> {
  const res = await send(agent, base, 'POST', path, { ...headers, 'content-type': 'application/json' }, JSON.stringify(body))
  if (res.status !== expected) throw new Error(`POST ${path}: ${res.status} ${res.body.slice(0, 200)}`)
  return JSON.parse(res.body) as T
}

async function grant (agent: Agent, base: string, fields: Record<string, string>): Promise<string> {
  const res = await send(agent, base, 'POST', '/auth/token', { 'content-type': 'application/x-www-form-urlencoded' }, new URLSearchParams(fields).toString())
  if (res.status !== 200) throw new Error(`POST /auth/token (${fields.grant_type}): ${res.status} ${res.body.slice(0, 200)}`)
  return (JSON.parse(res.body) as { access_token: string }).access_token
}

/** `work(i)` for i in [0, count), `concurrency` at a time. */
async function pool (count: number, concurrency: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count && !interrupted()) await work(next++)
  }))
}

/** Nearest-rank percentile of ascending values; NaN when there are none. */
function percentile (sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

const round1 = (ms: number): number => Math.round(ms * 10) / 10

/** A process's CPU time so far (every thread, user and system), in seconds; 0 once it is gone. */
async function cpuSeconds (pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // Fields after "(comm)": the first is field 3 (state); utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / clockTicks
  } catch {
    return 0
  }
}

/** The PostgreSQL backends serving `database` on this machine ("postgres: user database address state"), if visible. */
async function backendsOf (database: string): Promise<number[]> {
  const pids: number[] = []
  for (const entry of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(entry)) continue
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.startsWith('postgres: ') && cmdline.split(' ')[2] === database) pids.push(Number(entry))
  }
  return pids
}

const cpuOf = async (pids: number[]): Promise<number> => (await Promise.all(pids.map(cpuSeconds))).reduce((a, b) => a + b, 0)

function spread (delays: number[]): { p50Ms: number, p99Ms: number, maxMs: number } {
  const sorted = delays.sort((a, b) => a - b)
  return { p50Ms: round1(percentile(sorted, 0.5)), p99Ms: round1(percentile(sorted, 0.99)), maxMs: round1(sorted.at(-1) ?? Number.NaN) }
}

/**
 * Sessions of a user written by SQL, each with a refresh token of ours, exchanged for an access token at the real
 * token endpoint (refresh-token grant): tokens exactly as the service issues them, without a password hash per session.
 */
async function openSessions (sql: postgres.Sql, agent: Agent, base: string, userId: string, count: number): Promise<Array<{ id: string, token: string }>> {
  const ids = Array.from({ length: count }, () => randomUUID())
  const refreshTokens = ids.map(() => randomBytes(32).toString('base64url'))
  await sql`insert into sessions (id, user_id, expires_at)
    select id, ${userId}::uuid, now() + interval '1 day' from unnest(${sql.array(ids)}::uuid[]) as id`
  await sql`insert into refresh_tokens (session_id, token_hash)
    select * from unnest(${sql.array(ids)}::uuid[], ${sql.array(refreshTokens.map(hashRefreshToken))}::text[])`
  const tokens: string[] = new Array(count)
  await pool(count, SETUP_CONCURRENCY, async (i) => {
    tokens[i] = await grant(agent, base, { grant_type: 'refresh_token', refresh_token: refreshTokens[i] })
  })
  checkInterrupted()
  return ids.map((id, i) => ({ id, token: tokens[i] }))
}

/** One subscriber of the feed: when each id of the storm reached it (NaN: not yet). */
class FeedSubscriber {
  readonly arrivals: Float64Array
  readonly synced: Promise<void>
  closed = false
  private readonly request: ClientRequest

  constructor (base: string, token: string, index: Map<string, number>) {
    this.arrivals = new Float64Array(index.size).fill(Number.NaN)
    let markSynced: () => void = () => {}
    let failSynced: (error: Error) => void = () => {}
    this.synced = new Promise((resolve, reject) => { markSynced = resolve; failSynced = reject })
    this.synced.catch(() => {})
    this.request = httpRequest(new URL('/sessions/ended/stream', base), {
      agent: false,
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }
    }, (res) => {
      if (res.statusCode !== 200) {
        failSynced(new Error(`GET /sessions/ended/stream: ${res.statusCode}`))
        res.resume()
        return
      }
      let buffered = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        const at = performance.now()
        buffered += chunk
        let end: number
        while ((end = buffered.indexOf('\n\n')) !== -1) {
          const block = buffered.slice(0, end)
          buffered = buffered.slice(end + 2)
          let event = 'message'
          let data = ''
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7)
            else if (line.startsWith('data: ')) data += line.slice(6)
          }
          if (event === 'synced') markSynced()
          if (event !== 'ended') continue
          for (const id of (JSON.parse(data) as { ids: string[] }).ids) {
            const i = index.get(id)
            if (i !== undefined && Number.isNaN(this.arrivals[i])) this.arrivals[i] = at
          }
        }
      })
      res.on('close', () => { this.closed = true; failSynced(new Error('the stream closed before its synced event')) })
    })
    this.request.on('error', (error) => { this.closed = true; failSynced(error) })
    this.request.end()
  }

  stop (): void {
    this.request.destroy()
  }
}

async function syncedWithin (subscriber: FeedSubscriber, ms: number): Promise<boolean> {
  const timer = new AbortController()
  try {
    return await Promise.race([subscriber.synced.then(() => true, () => false), sleep(ms, false, { signal: timer.signal }).catch(() => false)])
  } finally {
    timer.abort()
  }
}

/**
 * Runs the storm against `first` (bench/server.mjs, running with `env`) and a second instance it starts with the same
 * environment, and stops at the end. Figures are measured, never asserted.
 */
export async function logoutStorm (options: { env: NodeJS.ProcessEnv, databaseUrl: string, first: Server, sessions: number }): Promise<LogoutStorm> {
  const { env, databaseUrl, first, sessions: count } = options
  const notes: string[] = []
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} })
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  const probeAgent = new Agent({ keepAlive: true, maxSockets: SAMPLE })
  const subscribers: FeedSubscriber[] = []
  let second: Server | undefined
  let unlisten: (() => Promise<void>) | undefined
  try {
    const setupStarted = performance.now()
    second = await startServer('second', './server.mjs', env)
    await waitReady(second)
    const secondUrl = second.url

    // A plain user owns the storm's sessions; an administrator registers the feed's service client.
    const tag = randomBytes(4).toString('hex')
    const password = `storm ${randomBytes(12).toString('hex')}`
    const owner = await sendJson<{ id: string }>(agent, first.url, '/auth/register', 201, { username: `storm_${tag}`, email: `storm_${tag}@example.com`, password })
    const admin = await sendJson<{ id: string }>(agent, first.url, '/auth/register', 201, { username: `storm_admin_${tag}`, email: `storm_admin_${tag}@example.com`, password })
    await sql`insert into user_roles (user_id, role_name) values (${admin.id}::uuid, 'admin')`
    const [adminSession] = await openSessions(sql, agent, first.url, admin.id, 1)
    const client = await sendJson<{ client_id: string, client_secret: string }>(agent, first.url, '/admin/clients', 201,
      { name: `bench-logout-storm-${tag}`, scopes: ['sessions:ended'] }, { authorization: `Bearer ${adminSession.token}` })
    const clientToken = await grant(agent, first.url, { grant_type: 'client_credentials', client_id: client.client_id, client_secret: client.client_secret })

    const stormSessions = await openSessions(sql, agent, first.url, owner.id, count)
    const index = new Map(stormSessions.map((s, i) => [s.id, i]))
    // Evenly spread over the storm, so that few are polled at any one time.
    const sampled = new Set(Array.from({ length: Math.min(SAMPLE, count) }, (_, k) => Math.floor(k * count / Math.min(SAMPLE, count))))
    const protectedOnSecond = async (i: number): Promise<Answer> =>
      await send(probeAgent, secondUrl, 'GET', '/bench/protected', { authorization: `Bearer ${stormSessions[i].token}` })
    const before = await Promise.all([...sampled].map(protectedOnSecond))
    const refusedBefore = before.filter(a => a.status !== 200)
    if (refusedBefore.length > 0) throw new Error(`${refusedBefore.length} of ${sampled.size} sampled tokens refused on the second instance before the storm (${refusedBefore[0].status})`)

    for (let s = 0; s < SUBSCRIBERS; s++) subscribers.push(new FeedSubscriber(secondUrl, clientToken, index))
    // A stream can be left without its synced event (the service's heartbeat writes to it before its headers when it
    // ticks while the stream's replay is read, on a busy box): such a subscriber reconnects, as a real one would.
    let reconnections = 0
    for (let attempt = 1; ; attempt++) {
      const synced = await Promise.all(subscribers.map(async (s) => await syncedWithin(s, SYNCED_MS)))
      const stuck = [...synced.keys()].filter(k => !synced[k])
      if (stuck.length === 0) break
      if (attempt === SYNC_ATTEMPTS) throw new Error(`${stuck.length} of the feed's ${SUBSCRIBERS} subscribers got no synced event in ${SYNC_ATTEMPTS} attempts`)
      for (const k of stuck) {
        subscribers[k].stop()
        subscribers[k] = new FeedSubscriber(secondUrl, clientToken, index)
      }
      reconnections += stuck.length
    }
    if (reconnections > 0) notes.push(`feed subscribers that got no synced event within ${SYNCED_MS / 1000} s and reconnected: ${reconnections}`)
    notes.push(`setup: ${count} sessions by SQL and the refresh-token grant, ${sampled.size} sampled tokens accepted on the second instance, ` +
      `${SUBSCRIBERS} subscribers synced, in ${((performance.now() - setupStarted) / 1000).toFixed(1)} s`)
    checkInterrupted()

    // Every NOTIFY on the channel during the storm, heard on a connection of our own: how the ends were batched.
    let notifications = 0
    let notifiedIds = 0
    let counting = false
    unlisten = (await sql.listen(SESSION_ENDED_CHANNEL, (payload) => {
      if (!counting) return
      notifications++
      notifiedIds += payload.split(',').length
    })).unlisten
    counting = true

    // The storm; the sampled tokens are polled on the second instance from their logout's response until refused.
    const doneAt = new Float64Array(count).fill(Number.NaN)
    const refusedAt = new Map<number, number>()
    const polls: Array<Promise<void>> = []
    const pollUntilRefused = async (i: number): Promise<void> => {
      const giveUpAt = doneAt[i] + GIVE_UP_MS
      while (performance.now() < giveUpAt) {
        try {
          const res = await protectedOnSecond(i)
          if (res.status === 401) { refusedAt.set(i, res.at); return }
        } catch {}
        await sleep(POLL_MS)
      }
    }
    let logoutErrors = 0
    const backends = await backendsOf(new URL(databaseUrl).pathname.slice(1))
    const serverCpu0 = await Promise.all([[first.pid], [second.pid], backends].map(cpuOf))
    const cpu0 = process.cpuUsage()
    const sentAt = new Float64Array(count).fill(Number.NaN)
    const started = performance.now()
    await pool(count, CONCURRENCY, async (i) => {
      try {
        sentAt[i] = performance.now()
        const res = await send(agent, first.url, 'POST', '/auth/logout', { authorization: `Bearer ${stormSessions[i].token}` })
        if (res.status !== 204) { logoutErrors++; return }
        doneAt[i] = res.at
        if (sampled.has(i)) polls.push(pollUntilRefused(i))
      } catch {
        logoutErrors++
      }
    })
    const lastLogout = performance.now()
    const cpu = process.cpuUsage(cpu0)
    const serverCpu = (await Promise.all([[first.pid], [second.pid], backends].map(cpuOf))).map((s, k) => s - serverCpu0[k])
    checkInterrupted()
    const seconds = (lastLogout - started) / 1000

    // Every id at every subscriber, or 10 s after the last logout.
    const loggedOut = [...doneAt.keys()].filter(i => !Number.isNaN(doneAt[i]))
    const complete = (): boolean => subscribers.every(s => s.closed || loggedOut.every(i => !Number.isNaN(s.arrivals[i])))
    while (!complete() && performance.now() < lastLogout + GIVE_UP_MS && !interrupted()) await sleep(50)
    await Promise.all(polls)
    counting = false

    // Refused on the second: the first subscriber that heard of it; fan-out: every subscriber.
    const refusals: number[] = []
    const fromRequest: number[] = []
    const deliveries: number[] = []
    let early = 0
    let missingOnSecond = 0
    const missedBySome = new Set<number>()
    let missedDeliveries = 0
    for (const i of loggedOut) {
      let firstArrival = Number.POSITIVE_INFINITY
      for (const s of subscribers) {
        const at = s.arrivals[i]
        if (Number.isNaN(at)) { missedBySome.add(i); missedDeliveries++; continue }
        firstArrival = Math.min(firstArrival, at)
        // NOTIFY goes out before the logout is answered: the feed may be told before this process reads the answer.
        if (at < doneAt[i]) early++
        deliveries.push(Math.max(0, at - doneAt[i]))
      }
      if (firstArrival === Number.POSITIVE_INFINITY) missingOnSecond++
      else {
        refusals.push(Math.max(0, firstArrival - doneAt[i]))
        fromRequest.push(firstArrival - sentAt[i])
      }
    }
    const polled = [...refusedAt].map(([i, at]) => at - doneAt[i])
    const polledSpread = spread(polled)
    const polledLoggedOut = [...sampled].filter(i => !Number.isNaN(doneAt[i])).length

    const logoutsPerSecond = Math.round(loggedOut.length / seconds)
    const latency = spread(loggedOut.map(i => doneAt[i] - sentAt[i]))
    notes.push(`${loggedOut.length} logouts (204) in ${seconds.toFixed(2)} s, ${CONCURRENCY} in flight, on the first instance: ` +
      `latency p50 ${latency.p50Ms} ms, p99 ${latency.p99Ms} ms, max ${latency.maxMs} ms`)
    notes.push(`NOTIFYs heard on ${SESSION_ENDED_CHANNEL} during the storm: ${notifications}, carrying ${notifiedIds} ids ` +
      `(${notifications === 0 ? 0 : (notifiedIds / notifications).toFixed(1)} ids per NOTIFY)`)
    notes.push(`real requests: ${polled.length} of ${polledLoggedOut} sampled tokens answered 401 on the second instance (GET /bench/protected polled every ${POLL_MS} ms), ` +
      `p50 ${polledSpread.p50Ms} ms, max ${polledSpread.maxMs} ms after their logout's response`)
    if (early > 0) {
      const s = spread(fromRequest)
      notes.push(`${early} of ${loggedOut.length * subscribers.length} deliveries reached a subscriber before this process had read the logout's response (counted as 0 ms); ` +
        `from the logout's request instead, refused on the second p50 ${s.p50Ms} ms, p99 ${s.p99Ms} ms, max ${s.maxMs} ms`)
    }
    if (missedDeliveries > 0) notes.push(`${missedDeliveries} deliveries missing in all (${missedBySome.size} ids missed by at least one subscriber)`)
    const dropped = subscribers.filter(s => s.closed).length
    if (dropped > 0) notes.push(`${dropped} of ${subscribers.length} feed streams closed during the storm`)
    const percent = (cpuSeconds: number): string => `${(cpuSeconds / seconds * 100).toFixed(0)}%`
    notes.push(`CPU during the storm (of one core): first instance ${percent(serverCpu[0])}, second ${percent(serverCpu[1])}, ` +
      `PostgreSQL (${backends.length === 0 ? 'its backends not visible here' : `${backends.length} backends of the database`}) ${percent(serverCpu[2])}, ` +
      `load generator (this process) ${percent((cpu.user + cpu.system) / 1e6)}`)

    return {
      sessions: count,
      seconds: Math.round(seconds * 100) / 100,
      logoutsPerSecond,
      logoutErrors,
      refusedOnSecond: { ...spread(refusals), missing: missingOnSecond },
      feed: { subscribers: subscribers.length, ...spread(deliveries), missing: missedBySome.size },
      notes
    }
  } finally {
    for (const s of subscribers) s.stop()
    agent.destroy()
    probeAgent.destroy()
    await unlisten?.().catch(() => {})
    await sql.end({ timeout: 5 }).catch(() => {})
    if (second !== undefined) {
      await stopServer(second)
      log(`stopped the second instance (pid ${second.pid})`)
    }
  }
}

/** A short markdown table of the storm's figures. */
export function logoutStormTable (storm: LogoutStorm): string {
  const { refusedOnSecond: r, feed: f } = storm
  return [
    `| logout storm (${storm.sessions} sessions) | figure |`,
    '|---|---|',
    `| logouts/s on the first instance | ${storm.logoutsPerSecond} (${storm.seconds} s, ${storm.logoutErrors} errors) |`,
    `| refused on the second, p50 / p99 / max | ${r.p50Ms} / ${r.p99Ms} / ${r.maxMs} ms (${r.missing} missing) |`,
    `| feed fan-out to ${f.subscribers} subscribers, p50 / p99 / max | ${f.p50Ms} / ${f.p99Ms} / ${f.maxMs} ms (${f.missing} ids missed) |`,
    '',
    ...storm.notes.map(n => `- ${n}`)
  ].join('\n')
}
