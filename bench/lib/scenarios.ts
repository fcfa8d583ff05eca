// The scenarios: what each one sends to which server, and how a scenario and the rounds over all of them run.
import { randomBytes } from 'node:crypto'
import type autocannon from 'autocannon'
import postgres from 'postgres'
import { alive, type Server } from './children.js'
import { checkInterrupted } from './interruption.js'
import { cannon, drain, measure, type Measured } from './load.js'
import type { RunOptions } from './cli.js'
import { log } from './progress.js'

export const PASSWORD = 'bench password, correct horse battery'
export const CONNECTIONS = 10
export const STORM_LOGIN_CONNECTIONS = 20
/** Login measured alone at each number of clients, against the queueing bound (the CONNECTIONS level is scenario 4). */
export const LOGIN_LEVELS = [1, 2, 4, CONNECTIONS]

export const loginLabel = (connections: number): string => connections === CONNECTIONS
  ? '4 POST /auth/token password (login)'
  : `4c${connections} POST /auth/token password (login, ${connections} conn)`

export interface Load {
  label: string
  /** Called before each run (warm-up and measured), outside the measured window: logs in, makes the options. */
  options: (seconds: number) => Promise<autocannon.Options>
  /** Record every response's latency for a p95. */
  p95?: boolean
}

export interface Scenario {
  id: string
  server: Server
  loads: Load[]
}

/**
 * Registers the user every login scenario logs in as (an administrator, so that its tokens carry scopes), and
 * defines the scenarios (the report finds its rows by label).
 */
export async function benchScenarios (service: Server, baseline: Server, databaseUrl: string): Promise<Scenario[]> {
  const username = 'bench_user'
  await registerAdmin(service, databaseUrl, username)
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const loginBody = new URLSearchParams({ grant_type: 'password', username, password: PASSWORD }).toString()
  const login = async (): Promise<{ access_token: string, refresh_token: string }> => {
    const res = await fetch(`${service.url}/auth/token`, { method: 'POST', headers: form, body: loginBody, signal: AbortSignal.timeout(10_000) })
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`)
    return await res.json() as { access_token: string, refresh_token: string }
  }
  // A fresh token for each run: runs may outlast ACCESS_TOKEN_TTL.
  const bearerGet = (path: string, connections = CONNECTIONS) => async (duration: number): Promise<autocannon.Options> => ({
    url: `${service.url}${path}`, connections, duration, headers: { authorization: `Bearer ${(await login()).access_token}` }
  })
  const passwordLogins = (connections: number) => async (duration: number): Promise<autocannon.Options> => ({
    url: `${service.url}/auth/token`, connections, duration, method: 'POST', headers: form, body: loginBody
  })

  // Unique usernames across connections and runs. Requests are set per connection (setupClient): autocannon's
  // top-level `requests` objects are shared by all connections, so their first bodies would collide.
  const tag = randomBytes(3).toString('hex')
  let registrations = 0
  const registerBody = (): string => {
    const name = `r${tag}_${registrations++}`
    return JSON.stringify({ username: name, email: `${name}@example.com`, password: PASSWORD })
  }
  const registrationsLoad = async (duration: number): Promise<autocannon.Options> => ({
    url: `${service.url}/auth/register`,
    connections: CONNECTIONS,
    duration,
    setupClient: (client) => {
      client.setRequests([{
        method: 'POST',
        path: '/auth/register',
        headers: { 'content-type': 'application/json' },
        setupRequest: (request) => ({ ...request, body: registerBody() })
      }])
    }
  })

  // Refresh-token rotation: one session per connection, logged in before the run; each connection sends its
  // session's latest refresh token and keeps the one it gets back. The chain lives in a per-connection slot (set
  // up in setupClient) rather than in autocannon's context, which autocannon resets after every pass over the
  // requests array, i.e. after every request here.
  const refreshLoad = async (duration: number): Promise<autocannon.Options> => {
    const tokens = (await Promise.all(Array.from({ length: CONNECTIONS }, async () => await login()))).map(t => t.refresh_token)
    let next = 0
    return {
      url: `${service.url}/auth/token`,
      connections: CONNECTIONS,
      duration,
      setupClient: (client) => {
        const slot = next++ % tokens.length
        client.setRequests([{
          method: 'POST',
          path: '/auth/token',
          headers: form,
          setupRequest: (request) => ({ ...request, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens[slot] }).toString() }),
          onResponse: (status, body) => {
            if (status === 200) tokens[slot] = (JSON.parse(body) as { refresh_token: string }).refresh_token
          }
        }])
      }
    }
  }

  return [
    { id: '1', server: baseline, loads: [{ label: '1 baseline GET / (bare Fastify)', options: async (duration) => ({ url: `${baseline.url}/`, connections: CONNECTIONS, duration }) }] },
    { id: '2', server: service, loads: [{ label: '2 GET /bench/protected', options: bearerGet('/bench/protected') }] },
    { id: '2s', server: service, loads: [{ label: '2s GET /bench/scoped (+ scope check)', options: bearerGet('/bench/scoped') }] },
    { id: '3', server: service, loads: [{ label: '3 GET /users/me', options: bearerGet('/users/me') }] },
    { id: '4', server: service, loads: [{ label: loginLabel(CONNECTIONS), options: passwordLogins(CONNECTIONS) }] },
    ...LOGIN_LEVELS.filter(n => n !== CONNECTIONS).map(n => ({ id: `4c${n}`, server: service, loads: [{ label: loginLabel(n), options: passwordLogins(n) }] })),
    { id: '5', server: service, loads: [{ label: '5 POST /auth/register', options: registrationsLoad }] },
    { id: '6', server: service, loads: [{ label: '6 POST /auth/token refresh_token (rotation)', options: refreshLoad }] },
    {
      id: '7',
      server: service,
      loads: [
        { label: `7 storm: GET /bench/protected (${CONNECTIONS} conn)`, options: bearerGet('/bench/protected') },
        { label: `7 storm: POST /auth/token password (${STORM_LOGIN_CONNECTIONS} conn)`, options: passwordLogins(STORM_LOGIN_CONNECTIONS) }
      ]
    }
  ]
}

/** Registers `username` (with PASSWORD) through the API and makes it an administrator by SQL, so that its tokens carry scopes. */
export async function registerAdmin (service: Server, databaseUrl: string, username: string): Promise<void> {
  const registered = await fetch(`${service.url}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, email: `${username}@example.com`, password: PASSWORD }),
    signal: AbortSignal.timeout(10_000)
  })
  if (registered.status !== 201) throw new Error(`could not register ${username}: ${registered.status} ${await registered.text()}`)
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} })
  try {
    await sql`insert into user_roles (user_id, role_name) select id, 'admin' from users where username = ${username}`
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/** Every scenario, --rounds times; the measurements by scenario id, one per round. */
export async function runRounds (scenarios: Scenario[], run: RunOptions): Promise<Record<string, Measured[]>> {
  const measured: Record<string, Measured[]> = {}
  const servers = [...new Set(scenarios.map(s => s.server))]
  // Rounds alternate over the scenarios, so that noise on the shared box hits each of them.
  for (let r = 0; r < run.rounds; r++) {
    for (const scenario of scenarios) {
      // Every server of the run settles first, not only this scenario's: work a previous scenario left queued in
      // another process (a login storm's argon2 backlog) would otherwise take the cores from this one.
      for (const server of servers) await drain(server, SETTLE_BOUND_MS)
      log(`round ${r + 1}/${run.rounds}, scenario ${scenario.id}: ${run.warmupSeconds} s warm-up, ${run.durationSeconds} s measured`)
      const m = await runScenario(scenario, run)
      ;(measured[scenario.id] ??= []).push(m)
      for (const [i, load] of scenario.loads.entries()) {
        const f = m.loads[i]
        log(`  ${load.label}: ${f.rps.toFixed(1)} req/s, p50 ${f.p50} ms, p99 ${f.p99} ms, ${f.ok} 2xx, ${f.non2xx} non-2xx, ${f.errors} errors`)
      }
    }
  }
  return measured
}

/** How long a server may go on working after its scenario before the next scenario starts anyway. */
const SETTLE_BOUND_MS = 15_000

/** Warm-up (discarded), then the measured run. */
async function runScenario (scenario: Scenario, run: RunOptions): Promise<Measured> {
  if (run.warmupSeconds > 0) await Promise.all((await prepare(scenario.loads, run.warmupSeconds)).map(async (o) => await cannon(o)))
  await drain(scenario.server)
  checkInterrupted()
  if (!alive(scenario.server.child)) throw new Error(`${scenario.server.name} exited`)
  const measured = await measure(scenario.server, await prepare(scenario.loads, run.durationSeconds), scenario.loads.map(l => l.p95 === true))
  await drain(scenario.server)
  checkInterrupted()
  return measured
}

/** The loads' options, made one after the other (each may log in). */
async function prepare (loads: Load[], seconds: number): Promise<autocannon.Options[]> {
  const options = []
  for (const load of loads) options.push(await load.options(seconds))
  return options
}
