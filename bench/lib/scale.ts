// The scale scenarios: the same routes at a small and a large size side by side, so that a reader sees how cost grows
// with the data. Each size is a database of its own, seeded by SQL (bench/lib/seed.ts), served by the compiled service
// run as the image runs it (node [Dockerfile flags] dist/server.js); restarts are timed from spawn to GET /health/ready.
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import type autocannon from 'autocannon'
import postgres from 'postgres'
import { RUNTIME, serviceEnvironment, stopServer, track, waitReady, type Server } from './children.js'
import type { BenchDatabase } from './database.js'
import { rssKb } from './load.js'
import { log } from './progress.js'
import type { Row } from './report.js'
import { CONNECTIONS, PASSWORD, type Scenario } from './scenarios.js'
import { seed, SEARCH_PREFIX, type Seeded } from './seed.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** Seeded ends are spread over this many seconds before now: inside the window (ACCESS_TOKEN_TTL + 60 s) for minutes. */
const ENDED_WITHIN_SECONDS = 300
const RESTARTS = 3
const SETTLE_MS = 300

export interface ScaleSize {
  name: 'small' | 'large'
  users: number
  database: BenchDatabase
  env: NodeJS.ProcessEnv
  seeded: Seeded
  server: Server
  /** One per restart, in order. */
  restarts: Array<{ readyMs: number, rssMb: number }>
}

export interface ScalePhase {
  sizes: ScaleSize[]
  scenarios: Scenario[]
  stop: () => Promise<void>
}

/** Scale scenario ids and what they send; the label of each load names its size. */
const ROUTES = [
  { id: 'login', what: 'POST /auth/token password (login)', p95: true },
  { id: 'me', what: 'GET /users/me' },
  { id: 'sessions', what: 'GET /users/me/sessions (5 sessions)' },
  // One administrator at a time: the latency of a page, not of ten requests queued for PostgreSQL's two cores.
  { id: 'list', what: 'GET /admin/users?limit=20 (first page, 1 conn)', connections: 1 },
  { id: 'page2', what: 'GET /admin/users?limit=20&cursor= (second page, 1 conn)', connections: 1 },
  { id: 'search', what: `GET /admin/users?q=${SEARCH_PREFIX}&limit=20 (prefix search, 1 conn)`, connections: 1 }
] as const

export type ScaleRouteId = typeof ROUTES[number]['id']

export const scaleLabel = (route: ScaleRouteId, size: { name: string, users: number }): string =>
  `s-${route}-${size.name} ${ROUTES.find(r => r.id === route)?.what ?? route} [${size.users.toLocaleString('en')} users]`

/** A free port on loopback (the service, as the image runs it, is given its PORT). */
async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number }
      probe.close(() => { resolve(port) })
    })
  })
}

/** `node [image flags] dist/server.js` on a port of its own: what a container (re)start runs. */
async function startCompiled (name: string, env: NodeJS.ProcessEnv): Promise<Server> {
  const port = await freePort()
  const spawnedAt = performance.now()
  const child = spawn(process.execPath, [...RUNTIME.flags, RUNTIME.script], {
    cwd: ROOT,
    env: { ...env, NODE_OPTIONS: RUNTIME.nodeOptions, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  if (child.pid === undefined) throw new Error(`${name}: could not spawn`)
  track(child)
  // Its (warn-level) log goes to stderr, off the report.
  child.stdout?.pipe(process.stderr)
  return { name, child, pid: child.pid, url: `http://127.0.0.1:${port}`, spawnedAt, listeningMs: 0 }
}

/** Starts, waits for readiness, and reports spawn-to-ready ms and RSS once settled. */
async function start (size: Pick<ScaleSize, 'name' | 'env'>): Promise<{ server: Server, readyMs: number, rssMb: number }> {
  const server = await startCompiled(`service (${size.name})`, size.env)
  const readyMs = await waitReady(server)
  await new Promise(resolve => setTimeout(resolve, SETTLE_MS))
  return { server, readyMs, rssMb: await rssKb(server.pid) / 1024 }
}

async function login (server: Server, username: string): Promise<{ access_token: string }> {
  const res = await fetch(`${server.url}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', username, password: PASSWORD }).toString(),
    signal: AbortSignal.timeout(10_000)
  })
  if (res.status !== 200) throw new Error(`login failed on ${server.name}: ${res.status}`)
  return await res.json() as { access_token: string }
}

/**
 * Two databases (SMALL_USERS and `largeUsers`), each migrated, given the bench users and seeded; the compiled
 * service restarted RESTARTS times on each, alternating (spawn to ready, RSS); then left running for the scenarios.
 */
export async function scalePhase (newDatabase: () => Promise<BenchDatabase>, smallUsers: number, largeUsers: number): Promise<ScalePhase> {
  const sizes: ScaleSize[] = []
  const stop = async (): Promise<void> => {
    for (const size of sizes) await stopServer(size.server)
  }
  try {
    for (const [name, users] of [['small', smallUsers], ['large', largeUsers]] as const) {
      const database = await newDatabase()
      const { env } = serviceEnvironment(database.url)
      Object.assign(env, { RATE_LIMIT_ENABLED: 'false', LOG_LEVEL: 'warn' })
      const first = await start({ name, env })
      const size: ScaleSize = { name, users, database, env, seeded: { users: 0, sessions: 0, endedSessions: 0, seconds: 0 }, server: first.server, restarts: [] }
      sizes.push(size)
      // The user the scenarios log in as (an administrator), and one with five sessions for the session list.
      for (const username of ['bench_user', 'bench_sessions']) {
        const res = await fetch(`${first.server.url}/auth/register`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username, email: `${username}@example.com`, password: PASSWORD }),
          signal: AbortSignal.timeout(10_000)
        })
        if (res.status !== 201) throw new Error(`could not register ${username} (${name}): ${res.status}`)
      }
      for (let i = 0; i < 5; i++) await login(first.server, 'bench_sessions')
      const sql = postgres(database.url, { max: 1, onnotice: () => {} })
      try {
        await sql`insert into user_roles (user_id, role_name) select id, 'admin' from users where username = 'bench_user'`
        size.seeded = await seed(sql, users, ENDED_WITHIN_SECONDS)
      } finally {
        await sql.end({ timeout: 5 })
      }
      log(`scale (${name}): ${size.seeded.users} users, ${size.seeded.sessions} sessions, ${size.seeded.endedSessions} ended in the last ${ENDED_WITHIN_SECONDS / 60} minutes, seeded in ${size.seeded.seconds.toFixed(1)} s`)
    }
    // Restarts, alternating sizes, as soon as both are seeded (the seeded ends are still inside the window).
    for (let r = 0; r < RESTARTS; r++) {
      for (const size of sizes) {
        await stopServer(size.server)
        const restarted = await start(size)
        size.server = restarted.server
        size.restarts.push({ readyMs: restarted.readyMs, rssMb: restarted.rssMb })
        log(`scale (${size.name}): restart ${r + 1}/${RESTARTS} ready in ${restarted.readyMs.toFixed(0)} ms, ${restarted.rssMb.toFixed(1)} MB RSS`)
      }
    }
  } catch (error) {
    await stop()
    throw error
  }
  return { sizes, scenarios: await scaleScenarios(sizes), stop }
}

/** Each route at each size, the sizes next to each other, so that the rounds alternate them. */
async function scaleScenarios (sizes: ScaleSize[]): Promise<Scenario[]> {
  const scenarios: Scenario[] = []
  for (const route of ROUTES) {
    for (const size of sizes) {
      const server = (): Server => size.server
      const connections = 'connections' in route ? route.connections : CONNECTIONS
      const bearerGet = (path: () => Promise<string>, username = 'bench_user') => async (duration: number): Promise<autocannon.Options> => ({
        url: `${server().url}${await path()}`, connections, duration, headers: { authorization: `Bearer ${(await login(server(), username)).access_token}` }
      })
      let options: (seconds: number) => Promise<autocannon.Options>
      switch (route.id) {
        case 'login':
          options = async (duration) => ({
            url: `${server().url}/auth/token`,
            connections: CONNECTIONS,
            duration,
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({ grant_type: 'password', username: 'bench_user', password: PASSWORD }).toString()
          })
          break
        case 'me': options = bearerGet(async () => '/users/me'); break
        case 'sessions': options = bearerGet(async () => '/users/me/sessions', 'bench_sessions'); break
        case 'list': options = bearerGet(async () => '/admin/users?limit=20'); break
        case 'page2': options = bearerGet(async () => `/admin/users?limit=20&cursor=${encodeURIComponent(await secondPageCursor(server()))}`); break
        case 'search': options = bearerGet(async () => `/admin/users?q=${SEARCH_PREFIX}&limit=20`); break
      }
      scenarios.push({
        id: `s-${route.id}-${size.name}`,
        // The scenario's server is looked up when it runs: restarts replace it.
        get server () { return size.server },
        loads: [{ label: scaleLabel(route.id, size), options, p95: 'p95' in route && route.p95 }]
      })
    }
  }
  return scenarios
}

async function secondPageCursor (server: Server): Promise<string> {
  const res = await fetch(`${server.url}/admin/users?limit=20`, {
    headers: { authorization: `Bearer ${(await login(server, 'bench_user')).access_token}` },
    signal: AbortSignal.timeout(10_000)
  })
  const page = await res.json() as { next_cursor: string | null }
  if (res.status !== 200 || page.next_cursor === null) throw new Error(`no second page on ${server.name}: ${res.status}`)
  return page.next_cursor
}

export interface ScaleComparison {
  route: ScaleRouteId
  small: Row
  large: Row
  /** large / small req/s. */
  rpsRatio: number
}

/** The scale rows paired by route, small beside large. */
export function compareSizes (rows: Row[], sizes: Array<{ name: string, users: number }>): ScaleComparison[] {
  const [small, large] = sizes
  return ROUTES.flatMap(({ id }) => {
    const s = rows.find(r => r.scenario === scaleLabel(id, small))
    const l = rows.find(r => r.scenario === scaleLabel(id, large))
    return s === undefined || l === undefined ? [] : [{ route: id, small: s, large: l, rpsRatio: s.rps > 0 ? l.rps / s.rps : 0 }]
  })
}
