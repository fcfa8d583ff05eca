import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'tap'
import { sql } from 'drizzle-orm'
import { openDatabase } from '../src/db/client.js'
import { LOCK_FILE } from '../src/db/data-dir-lock.js'
import { REFRESH_REFUSED, TEST_SECRET, freePort, rowsOf, startServer, stopServer, tempDir, testDatabaseUrl, uniqueName } from './helper.js'

const PASSWORD = 'Quokka-7731-Burst'
const CLIENTS = 20
const MAX_REQUESTS = 1500
// New requests stop here even if the kill has not come (a bound for a loaded machine, where progress is slow).
const BURST_MS = 12_000
// The kill comes in the middle of the burst: once this many chains are complete (and not too early), or at the latest.
const KILL_AFTER_CHAINS = 8
const KILL_NOT_BEFORE_MS = 750
const KILL_AT_LATEST_MS = 10_000

interface Answered { status: number, body: Record<string, unknown> }
/** 'unknown': sent, never answered (the kill came first); 'not sent': the burst was over before it left. */
type Answer = Answered | 'unknown' | 'not sent'

interface Chain {
  username: string
  registered?: number | 'unknown'
  /** The refresh tokens answered with 200, oldest (the login's) first. */
  tokens: string[]
  /** Its last request was in flight at the kill. */
  inFlight: boolean
  /** What its newest token got after the restart, and the token that answer carried. */
  after?: { status: number, token?: string }
  group?: 'works once' | 'older refused'
}

const sha256 = (token: string): string => createHash('sha256').update(token).digest('base64url')

async function post (url: string, path: string, body: { json: Record<string, string> } | { form: Record<string, string> }, signal?: AbortSignal): Promise<Answered> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'json' in body ? 'application/json' : 'application/x-www-form-urlencoded', 'user-agent': 'crash-test/1.0' },
    body: 'json' in body ? JSON.stringify(body.json) : new URLSearchParams(body.form).toString(),
    signal
  })
  return { status: res.status, body: await res.json() as Record<string, unknown> }
}

const refreshForm = (token: string): { form: Record<string, string> } => ({ form: { grant_type: 'refresh_token', refresh_token: token } })

class Burst {
  sent = 0
  answered = 0
  completed = 0
  stopped = false
  readonly unexpected: string[] = []
  readonly chains: Chain[] = []

  constructor (private readonly url: string, private readonly deadline: number) {}

  async post (path: string, body: Parameters<typeof post>[2]): Promise<Answer> {
    if (this.stopped || this.sent >= MAX_REQUESTS || performance.now() >= this.deadline) return 'not sent'
    this.sent += 1
    try {
      const answer = await post(this.url, path, body, AbortSignal.timeout(10_000))
      this.answered += 1
      return answer
    } catch {
      return 'unknown'
    }
  }

  /** register, password login, then a chain of refreshes each with the previous 200's token; again, until stopped. */
  async client (index: number): Promise<void> {
    for (let round = 0; ; round++) {
      const chain: Chain = { username: uniqueName('crash'), tokens: [], inFlight: false }
      const { username } = chain
      const registered = await this.post('/auth/register', { json: { username, email: `${username}@example.com`, password: PASSWORD } })
      if (registered === 'not sent') return
      this.chains.push(chain)
      chain.registered = registered === 'unknown' ? 'unknown' : registered.status
      if (registered === 'unknown') { chain.inFlight = true; return }
      if (registered.status !== 201) { this.unexpected.push(`register ${username}: ${registered.status} ${JSON.stringify(registered.body)}`); return }
      // Chains of 1 to 4 refreshes: at the kill, many chains are complete and others are cut short.
      const length = 1 + (index + round) % 4
      let answer = await this.post('/auth/token', { form: { grant_type: 'password', username, password: PASSWORD } })
      for (let refreshes = 0; ; refreshes++) {
        if (answer === 'not sent') return
        if (answer === 'unknown') { chain.inFlight = true; return }
        if (answer.status !== 200) { this.unexpected.push(`token for ${username}: ${answer.status} ${JSON.stringify(answer.body)}`); return }
        chain.tokens.push(answer.body.refresh_token as string)
        if (refreshes === length) { this.completed += 1; break }
        answer = await this.post('/auth/token', refreshForm(chain.tokens[chain.tokens.length - 1]))
      }
    }
  }
}

/** Runs `fn` over `items`, `limit` at a time. */
async function eachLimited<T> (items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await fn(items[next++])
  }))
}

const isRefused = (answer: Answered): boolean =>
  answer.status === 400 && answer.body.error === 'invalid_grant' && answer.body.error_description === REFRESH_REFUSED

test('SIGKILL amid registrations, logins and refreshes: when the service restarts on the same data, then every 201 user logs in, every newest refresh token answered 200 works once, older ones are refused, and no session holds two live refresh tokens', async (t) => {
  const databaseUrl = await testDatabaseUrl(t)
  const dataDir = await tempDir(t)
  const env: Record<string, string> = {
    DATA_DIR: dataDir,
    PORT: String(await freePort()),
    LOG_LEVEL: 'info',
    JWT_SECRET: TEST_SECRET,
    RATE_LIMIT_ENABLED: 'false',
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_TIME_COST: '1',
    // A retired token presented again is then always reuse, however long the restart took: no "concurrent request" by timing.
    REFRESH_REUSE_GRACE_SECONDS: '0',
    ...(databaseUrl !== undefined ? { DATABASE_URL: databaseUrl } : {})
  }

  const first = await startServer(env)
  t.teardown(() => { first.child.kill('SIGKILL') })
  // One round first, so the burst meets a warm service (the common-password list loaded, the code compiled).
  const warmUp = uniqueName('warm')
  await post(first.url, '/auth/register', { json: { username: warmUp, email: `${warmUp}@example.com`, password: PASSWORD } })
  const warmLogin = await post(first.url, '/auth/token', { form: { grant_type: 'password', username: warmUp, password: PASSWORD } })
  t.equal((await post(first.url, '/auth/token', refreshForm(warmLogin.body.refresh_token as string))).status, 200, 'the service answers a refresh before the burst')
  const burst = new Burst(first.url, performance.now() + BURST_MS)
  const started = performance.now()
  const clients = Array.from({ length: CLIENTS }, async (_, i) => { await burst.client(i) })
  const elapsed = (): number => performance.now() - started
  while ((burst.completed < KILL_AFTER_CHAINS || elapsed() < KILL_NOT_BEFORE_MS) && elapsed() < KILL_AT_LATEST_MS) await sleep(5)
  t.equal(first.child.exitCode, null, 'the service was still running when the kill came')
  const killedAfter = Math.round(elapsed())
  const exited = once(first.child, 'exit')
  burst.stopped = true
  first.child.kill('SIGKILL')
  const [, signal] = await exited
  await Promise.all(clients)
  t.equal(signal, 'SIGKILL', 'killed, with no chance to close anything')
  if (databaseUrl === undefined) t.ok(existsSync(join(dataDir, LOCK_FILE)), 'it left its DATA_DIR lock behind, for the restart to take over')

  const { chains } = burst
  t.same(burst.unexpected, [], 'every answer before the kill was 201 or 200')
  const held = chains.filter(c => c.tokens.length > 0)
  const settled = held.filter(c => !c.inFlight)
  const cutShort = held.filter(c => c.inFlight)
  t.ok(chains.some(c => c.inFlight), 'requests were in flight at the kill')
  t.comment(`burst: killed after ${killedAfter} ms; ${burst.sent} sent, ${burst.answered} answered; ${chains.length} chains, ${burst.completed} complete, ${chains.filter(c => c.inFlight).length} with a request in flight at the kill`)

  // Half the settled chains prove their newest token works once; the other half that an older one is retired. Reuse of
  // an older token ends the session (theft detection), so one chain cannot show both.
  settled.forEach((chain, i) => { chain.group = chain.tokens.length > 1 && i % 2 === 1 ? 'older refused' : 'works once' })
  t.ok(settled.filter(c => c.group === 'works once').length >= 2, 'settled chains to show their newest token works once')
  t.ok(settled.filter(c => c.group === 'older refused').length >= 2, 'settled chains with refreshes, to show an older token is refused')

  const second = await startServer(env)
  t.teardown(() => { second.child.kill('SIGKILL') })
  const { url } = second

  const lostUsers: string[] = []
  const inFlightRegistrations = { committed: 0, lost: 0 }
  await eachLimited(chains.filter(c => c.registered !== undefined), 4, async (chain) => {
    const login = await post(url, '/auth/token', { form: { grant_type: 'password', username: chain.username, password: PASSWORD } })
    if (chain.registered === 201 && login.status !== 200) lostUsers.push(`${chain.username}: registered 201, login now ${login.status}`)
    if (chain.registered === 'unknown') {
      if (login.status === 200) inFlightRegistrations.committed += 1
      else if (login.status === 401) inFlightRegistrations.lost += 1
      else lostUsers.push(`${chain.username}: registration in flight, login now ${login.status}`)
    }
  })
  t.same(lostUsers, [], 'every registration answered 201 survived: its user logs in')
  t.comment(`registrations in flight at the kill: ${inFlightRegistrations.committed} committed, ${inFlightRegistrations.lost} not`)

  const httpProblems: string[] = []
  await eachLimited(held, 4, async (chain) => {
    const newest = chain.tokens[chain.tokens.length - 1]
    if (chain.group === 'older refused') {
      const older = await post(url, '/auth/token', refreshForm(chain.tokens[chain.tokens.length - 2]))
      if (!isRefused(older)) httpProblems.push(`${chain.username}: an older token answered ${older.status} ${JSON.stringify(older.body)}`)
      // Refused as reuse, not as unknown: the database below shows the session ended for it, its newest token still live.
      return
    }
    const used = await post(url, '/auth/token', refreshForm(newest))
    chain.after = { status: used.status, token: used.body.refresh_token as string | undefined }
    if (chain.group === 'works once') {
      if (used.status !== 200) httpProblems.push(`${chain.username}: the newest token answered 200 before the kill now gets ${used.status} ${JSON.stringify(used.body)}`)
      const again = await post(url, '/auth/token', refreshForm(newest))
      if (!isRefused(again)) httpProblems.push(`${chain.username}: the newest token used a second time answered ${again.status} ${JSON.stringify(again.body)}`)
    } else if (used.status !== 200 && !isRefused(used)) {
      // Cut short: if the refresh in flight committed, the token the client holds was used (and is now reuse).
      httpProblems.push(`${chain.username}: a token whose refresh was in flight answered ${used.status} ${JSON.stringify(used.body)}`)
    }
  })
  t.same(httpProblems, [], 'newest tokens work exactly once; older tokens are refused as reuse')
  const cutShortUsed = cutShort.filter(c => c.after?.status !== 200)
  t.comment(`refreshes in flight at the kill: ${cutShort.length - cutShortUsed.length} had not committed (the held token still worked), ${cutShortUsed.length} had (the held token was used: 400 invalid_grant)`)

  t.equal(await stopServer(second), 0, 'the restarted service stops cleanly')

  // The embedded database belongs to the server while it runs: read it once the server is gone.
  const database = await openDatabase(databaseUrl !== undefined ? { url: databaseUrl } : { dataDir })
  let rows: Array<{ token_hash: string, session_id: string, rotated: boolean, end_reason: string | null }>
  try {
    rows = rowsOf(await database.db.execute(sql`
      select r.token_hash, r.session_id::text as session_id, r.rotated_at is not null as rotated, s.end_reason
      from refresh_tokens r join sessions s on s.id = r.session_id`))
  } finally {
    await database.close()
  }
  const live = new Map<string, number>()
  for (const row of rows) if (!row.rotated) live.set(row.session_id, (live.get(row.session_id) ?? 0) + 1)
  t.same([...live].filter(([, count]) => count > 1), [], 'no session has two refresh tokens that are not yet rotated')
  // A refresh is one transaction: no session that goes on is left with only retired tokens (a kill between retiring the
  // presented token and storing its successor did that, before sessions.refresh() became one transaction).
  const open = new Set(rows.filter(row => row.end_reason === null).map(row => row.session_id))
  t.same([...open].filter(id => live.get(id) !== 1), [], 'every session that was not ended has exactly one refresh token that is not yet rotated')

  const byHash = new Map(rows.map(row => [row.token_hash, row]))
  const dbProblems: string[] = []
  let lostRefreshInserted = 0
  for (const chain of held) {
    const stored = chain.tokens.map(token => byHash.get(sha256(token)))
    const newest = stored[stored.length - 1]
    if (stored.some(row => row === undefined)) { dbProblems.push(`${chain.username}: a refresh token answered 200 is missing`); continue }
    if (new Set(stored.map(row => row?.session_id)).size !== 1) dbProblems.push(`${chain.username}: its tokens are spread over sessions`)
    if (stored.slice(0, -1).some(row => row?.rotated !== true)) dbProblems.push(`${chain.username}: an older token is not rotated`)
    const afterRow = chain.after?.token !== undefined ? byHash.get(sha256(chain.after.token)) : undefined
    const expected = chain.group === 'older refused'
      ? { newestRotated: false, afterLive: undefined, reason: 'refresh_token_reuse' }
      : chain.group === 'works once'
        ? { newestRotated: true, afterLive: true, reason: 'refresh_token_reuse' }
        : chain.after?.status === 200
          ? { newestRotated: true, afterLive: true, reason: null }
          : { newestRotated: true, afterLive: undefined, reason: 'refresh_token_reuse' }
    const got = { newestRotated: newest?.rotated, afterLive: afterRow === undefined ? undefined : !afterRow.rotated, reason: newest?.end_reason }
    if (JSON.stringify(got) !== JSON.stringify(expected)) dbProblems.push(`${chain.username} (${chain.group ?? 'cut short'}): ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`)
    if (chain.inFlight && chain.after?.status !== 200 && live.get(newest?.session_id ?? '') === 1) lostRefreshInserted += 1
  }
  t.same(dbProblems, [], 'in the database: every token answered 200 is stored, older ones rotated, the newest as its checks left it')
  t.equal(lostRefreshInserted, cutShortUsed.length, 'every refresh that committed in flight stored its new token too (nothing half-done)')
})
