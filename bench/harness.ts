// Load-test harness: npm run bench [-- --duration N] [--warmup N] [--rounds N]
//
// Runs the real service (bench/server.mjs over the compiled dist/) on a real PostgreSQL, in a fresh database it creates and drops, beside a
// bare Fastify app (bench/baseline-server.mjs) as the physical reference; both are child processes on 127.0.0.1.
// PostgreSQL is BENCH_DATABASE_URL or DATABASE_URL when set (the user needs CREATEDB); otherwise a throwaway one is
// started with .ci/start-postgres.sh (as root: it su's to postgres) and stopped at the end.
//
// Each scenario is warmed up (discarded), then measured for --duration seconds with autocannon; --rounds N repeats
// the whole sequence N times, alternating, and reports medians. Prints a markdown table, the argon2 limit, the
// readiness time and the targets (met / missed) to stdout, progress to stderr, and writes the same as JSON to
// bench/results/. Figures are never asserted: the exit code is 0 whatever they are, non-zero only when the harness
// itself fails (a server did not start, a scenario got no 2xx answer at all).
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { Algorithm, hash } from '@node-rs/argon2'
import autocannon from 'autocannon'
import postgres from 'postgres'
import { loadConfig } from '../src/config.js'
import { imageRuntime } from '../scripts/image-runtime.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))
const execFileAsync = promisify(execFile)

const CONNECTIONS = 10
const STORM_LOGIN_CONNECTIONS = 20
const PASSWORD = 'bench password, correct horse battery'
const READY_TIMEOUT_MS = 30_000
const READY_POLL_MS = 10
const ARGON2_HASHES = 20
const ARGON2_BUDGET_MS = 10_000
const RSS_SAMPLE_MS = 100

const TARGETS = {
  protectedRatio: 0.70,
  usersMeRatio: 0.40,
  loginOfArgon2Limit: 0.90,
  loginP99HashWalls: 4,
  stormProtectedP99Ms: 25,
  peakRssMb: 200,
  readyMs: 1500
}

// ---------------------------------------------------------------------------------------------------- arguments

const usage = 'usage: npm run bench [-- --duration seconds (default 10)] [--warmup seconds] [--rounds n (default 1)]'
function numberOption (value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n < min || n > max) {
    console.error(`bench: --${name} must be a number from ${min} to ${max} (got ${value})\n${usage}`)
    process.exit(2)
  }
  return n
}

let args
try {
  args = parseArgs({ options: { duration: { type: 'string' }, warmup: { type: 'string' }, rounds: { type: 'string' } } }).values
} catch (error) {
  console.error(`bench: ${(error as Error).message}\n${usage}`)
  process.exit(2)
}
// Whole seconds: autocannon's req/s is the mean of per-second samples.
const DURATION = Math.round(numberOption(args.duration, 'duration', 10, 1, 300))
const WARMUP = numberOption(args.warmup, 'warmup', Math.min(1, DURATION / 2), 0, 30)
const ROUNDS = Math.round(numberOption(args.rounds, 'rounds', 1, 1, 10))

// ---------------------------------------------------------------------------------------------------- helpers

const log = (message: string): void => { console.error(`[bench] ${message}`) }
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const round = (x: number, digits = 1): number => Number(x.toFixed(digits))

let interrupted: string | undefined
function checkInterrupted (): void {
  if (interrupted !== undefined) throw new Error(`interrupted by ${interrupted}`)
}

// ------------------------------------------------------------------------------------------------ child processes

const children = new Set<ChildProcess>()
const alive = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null

// Whatever happens (an exception, process.exit), no server outlives the harness.
process.on('exit', () => {
  for (const child of children) if (alive(child)) child.kill('SIGKILL')
})

/** SIGTERM, then SIGKILL if it has not exited within graceMs. */
async function stopChild (child: ChildProcess, graceMs = 5000): Promise<void> {
  if (!alive(child)) return
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  const timer = new AbortController()
  child.kill('SIGTERM')
  const inTime = await Promise.race([exited.then(() => true), sleep(graceMs, false, { signal: timer.signal }).catch(() => false)])
  timer.abort()
  if (!inTime && alive(child)) {
    log(`pid ${child.pid} did not exit on SIGTERM within ${graceMs} ms: SIGKILL`)
    child.kill('SIGKILL')
    const killTimer = new AbortController()
    await Promise.race([exited, sleep(2000, undefined, { signal: killTimer.signal }).catch(() => {})])
    killTimer.abort()
  }
  children.delete(child)
}

interface Server {
  name: string
  child: ChildProcess
  pid: number
  url: string
  spawnedAt: number
  /** ms from spawn to the JSON line with the port. */
  listeningMs: number
}

// As the image runs node (the Dockerfile's CMD flags and NODE_OPTIONS): both servers get the same, so they compare fairly.
const RUNTIME = imageRuntime()

/** Starts `node <script>` (plain JavaScript) and waits (at most 30 s) for its {"port":N} line. */
async function startServer (name: string, script: string, env: NodeJS.ProcessEnv): Promise<Server> {
  const spawnedAt = performance.now()
  const child = spawn(process.execPath, [...RUNTIME.flags, fileURLToPath(new URL(script, import.meta.url))], {
    cwd: ROOT,
    env: { ...env, NODE_OPTIONS: RUNTIME.nodeOptions },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  children.add(child)
  const stdout = child.stdout
  if (stdout === null || child.pid === undefined) throw new Error(`${name}: could not spawn`)
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    let found = false
    const timer = setTimeout(() => { reject(new Error(`${name} did not listen within ${READY_TIMEOUT_MS / 1000} s`)) }, READY_TIMEOUT_MS)
    stdout.on('data', (chunk: Buffer) => {
      // After the port line the server's stdout is its (warn-level) log: passed on to stderr, off the report.
      if (found) { process.stderr.write(chunk); return }
      out += chunk.toString()
      const lines = out.split('\n')
      const line = lines.find(l => l.startsWith('{"port"'))
      if (line === undefined) return
      found = true
      clearTimeout(timer)
      const rest = lines.filter(l => l !== line).join('\n')
      if (rest.trim() !== '') process.stderr.write(rest + '\n')
      resolve((JSON.parse(line) as { port: number }).port)
    })
    child.once('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`${name} exited (${code ?? signal}) before listening`)) })
    child.once('error', (error) => { clearTimeout(timer); reject(error) })
  })
  return { name, child, pid: child.pid, url: `http://127.0.0.1:${port}`, spawnedAt, listeningMs: performance.now() - spawnedAt }
}

/** ms from spawn until GET /health/ready answers 200, polled every 10 ms, at most 30 s after the spawn. */
async function waitReady (server: Server): Promise<number> {
  const deadline = server.spawnedAt + READY_TIMEOUT_MS
  while (performance.now() < deadline) {
    if (!alive(server.child)) throw new Error(`${server.name} exited before it was ready`)
    try {
      const res = await fetch(`${server.url}/health/ready`, { signal: AbortSignal.timeout(1000) })
      await res.arrayBuffer()
      if (res.status === 200) return performance.now() - server.spawnedAt
    } catch {}
    await sleep(READY_POLL_MS)
  }
  throw new Error(`${server.name}: GET /health/ready did not answer 200 within ${READY_TIMEOUT_MS / 1000} s`)
}

// ------------------------------------------------------------------------------------------------------ PostgreSQL

interface PostgresServer { url: string, throwaway: boolean, stop: () => Promise<void> }

// The newest pg_ctl, as .ci/run finds it; as root, run as postgres (it refuses root).
const PG_STOP = `BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -1)")"
[ -x "$BIN/pg_ctl" ] || BIN="$(dirname "$(command -v pg_ctl)")"
if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$BIN/pg_ctl -D $PG_DIR/data -m fast stop"; else "$BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop; fi`

async function postgresServer (): Promise<PostgresServer> {
  const given = [process.env.BENCH_DATABASE_URL, process.env.DATABASE_URL].find(u => u !== undefined && u !== '')
  if (given !== undefined) return { url: given, throwaway: false, stop: async () => {} }

  const ownDir = process.env.PG_DIR === undefined || process.env.PG_DIR === ''
  const dir = ownDir ? await mkdtemp(join(tmpdir(), 'auth-bench-pg-')) : process.env.PG_DIR as string
  const stop = async (): Promise<void> => {
    try {
      await execFileAsync('sh', ['-c', PG_STOP], { env: { ...process.env, PG_DIR: dir }, timeout: 60_000 })
      log(`stopped the throwaway PostgreSQL in ${dir}`)
    } catch (error) {
      log(`could not stop the throwaway PostgreSQL in ${dir}: ${(error as Error).message.split('\n')[0]}`)
    }
    if (ownDir) await rm(dir, { recursive: true, force: true }).catch(() => {})
  }
  log(`no DATABASE_URL: starting a throwaway PostgreSQL in ${dir} (.ci/start-postgres.sh)`)
  try {
    const { stdout } = await execFileAsync(join(ROOT, '.ci/start-postgres.sh'), [], { env: { ...process.env, PG_DIR: dir }, timeout: 180_000 })
    const url = stdout.trim().split('\n').pop() ?? ''
    if (!url.startsWith('postgres://')) throw new Error(`.ci/start-postgres.sh printed no URL: ${stdout}`)
    return { url, throwaway: true, stop }
  } catch (error) {
    await stop()
    const hint = process.getuid?.() === 0 ? '' : ' (it needs root, to run PostgreSQL as the postgres user)'
    throw new Error(`could not start a throwaway PostgreSQL${hint}; or set DATABASE_URL: ${(error as Error).message}`)
  }
}

/** A fresh database on the server, and how to drop it. */
async function benchDatabase (serverUrl: string): Promise<{ url: string, name: string, version: string, drop: () => Promise<void> }> {
  const name = `auth_bench_${randomBytes(6).toString('hex')}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 })
  let version: string
  try {
    const [row] = await admin<Array<{ server_version: string }>>`show server_version`
    version = row.server_version
    await admin.unsafe(`create database ${name}`)
  } finally {
    await admin.end({ timeout: 5 })
  }
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    name,
    version,
    drop: async () => {
      const cleanup = postgres(serverUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 })
      try {
        await cleanup.unsafe(`drop database if exists ${name} with (force)`)
        log(`dropped database ${name}`)
      } finally {
        await cleanup.end({ timeout: 5 })
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ the argon2 limit

interface Argon2Limit {
  params: { memoryCost: number, timeCost: number, parallelism: number }
  hashes: number
  cpuMsPerHash: number
  wallMsPerHash: number
  cores: number
  logins: number
}

/**
 * Sequential hashes in this process at the service's parameters: CPU time per hash (process.cpuUsage counts libuv's
 * pool threads too) and wall time per hash, medians. No process on this box can verify passwords faster than
 * cores / CPU seconds per hash, so that is the ceiling for logins/s.
 */
async function argon2Limit (): Promise<Argon2Limit> {
  const c = loadConfig({
    ARGON2_MEMORY_KIB: process.env.ARGON2_MEMORY_KIB,
    ARGON2_TIME_COST: process.env.ARGON2_TIME_COST,
    ARGON2_PARALLELISM: process.env.ARGON2_PARALLELISM
  })
  const params = { memoryCost: c.ARGON2_MEMORY_KIB, timeCost: c.ARGON2_TIME_COST, parallelism: c.ARGON2_PARALLELISM }
  const options = { algorithm: Algorithm.Argon2id, ...params }
  await hash(PASSWORD, options) // warm-up: thread pool, first allocation
  const cpu: number[] = []
  const wall: number[] = []
  const deadline = performance.now() + ARGON2_BUDGET_MS
  for (let i = 0; i < ARGON2_HASHES && performance.now() < deadline; i++) {
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    await hash(PASSWORD, options)
    wall.push(performance.now() - t0)
    const used = process.cpuUsage(cpu0)
    cpu.push((used.user + used.system) / 1000)
  }
  const cores = availableParallelism()
  const cpuMsPerHash = median(cpu)
  return { params, hashes: cpu.length, cpuMsPerHash, wallMsPerHash: median(wall), cores, logins: cores / (cpuMsPerHash / 1000) }
}

// -------------------------------------------------------------------------------------------- process sampling

let clockTicks = 100
try {
  clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
} catch {}

/** utime and stime of the whole process (every thread), in clock ticks. */
async function cpuTimes (pid: number): Promise<{ user: number, system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after "(comm)": the first is field 3 (state); utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]), system: Number(fields[12]) }
}

async function cpuTicks (pid: number): Promise<number> {
  const { user, system } = await cpuTimes(pid)
  return user + system
}

async function rssKb (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match === null ? 0 : Number(match[1])
}

/** Samples VmRSS every 100 ms until stopped; resolves to the peak in MB. */
function rssSampler (pid: number): { stop: () => Promise<number> } {
  let peak = 0
  const sample = async (): Promise<void> => {
    try { peak = Math.max(peak, await rssKb(pid)) } catch {}
  }
  sample().catch(() => {})
  const timer = setInterval(() => { sample().catch(() => {}) }, RSS_SAMPLE_MS)
  return {
    stop: async () => {
      clearInterval(timer)
      await sample()
      return peak / 1024
    }
  }
}

/**
 * Waits until the server is idle (at most one clock tick of CPU in 200 ms), at most 3 s: requests the load
 * generator gave up on at the end of a run (logins queued on argon2) still finish on the server, and must not be
 * charged to the next measured window, nor be cut off by a shutdown.
 */
async function drain (server: Server): Promise<void> {
  const deadline = performance.now() + 3000
  try {
    let before = await cpuTicks(server.pid)
    while (performance.now() < deadline && alive(server.child)) {
      await sleep(200)
      const now = await cpuTicks(server.pid)
      if (now - before <= 1) return
      before = now
    }
  } catch {}
}

// ------------------------------------------------------------------------------------------------------ load

const activeCannons = new Set<autocannon.Instance>()

/** One autocannon run; stopped anyway 30 s after its duration should have ended. */
async function cannon (options: autocannon.Options): Promise<autocannon.Result> {
  return await new Promise((resolve, reject) => {
    const instance = autocannon({ timeout: 10, ...options }, (error, result) => {
      clearTimeout(guard)
      activeCannons.delete(instance)
      if (error !== null && error !== undefined) reject(error instanceof Error ? error : new Error(String(error)))
      else resolve(result)
    })
    activeCannons.add(instance)
    // Called back asynchronously, after this line.
    const guard = setTimeout(() => { instance.stop() }, (Number(options.duration) + 30) * 1000)
  })
}

interface Load {
  label: string
  /** Called before each run (warm-up and measured), outside the measured window: logs in, makes the options. */
  options: (seconds: number) => Promise<autocannon.Options>
}

interface Scenario {
  id: string
  server: Server
  loads: Load[]
}

interface LoadFigures {
  rps: number
  p50: number
  p99: number
  errors: number
  timeouts: number
  non2xx: number
  ok: number
  /** Responses / autocannon's own duration: a cross-check of rps. */
  total: number
  seconds: number
}

interface Measured {
  loads: LoadFigures[]
  seconds: number
  serverCpuPercent: number
  /** The kernel's part of serverCpuPercent (stime). */
  serverSystemCpuPercent: number
  peakRssMb: number
  loadGeneratorCpuPercent: number
}

function figures (r: autocannon.Result): LoadFigures {
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors, timeouts: r.timeouts, non2xx: r.non2xx, ok: r['2xx'], total: r.requests.total, seconds: r.duration }
}

async function runLoads (loads: Load[], seconds: number): Promise<autocannon.Result[]> {
  const options = []
  for (const load of loads) options.push(await load.options(seconds))
  return await Promise.all(options.map(async (o) => await cannon(o)))
}

/** Warm-up (discarded), then the measured run with the server's CPU ticks and peak RSS around it. */
async function runScenario (scenario: Scenario): Promise<Measured> {
  const pid = scenario.server.pid
  if (WARMUP > 0) await runLoads(scenario.loads, WARMUP)
  await drain(scenario.server)
  checkInterrupted()
  if (!alive(scenario.server.child)) throw new Error(`${scenario.server.name} exited`)
  const options = []
  for (const load of scenario.loads) options.push(await load.options(DURATION))
  const ticks0 = await cpuTimes(pid)
  const ownCpu0 = process.cpuUsage()
  const rss = rssSampler(pid)
  const t0 = performance.now()
  const results = await Promise.all(options.map(async (o) => await cannon(o)))
  const seconds = (performance.now() - t0) / 1000
  const ticks1 = await cpuTimes(pid)
  const ownCpu = process.cpuUsage(ownCpu0)
  const peakRssMb = await rss.stop()
  await drain(scenario.server)
  checkInterrupted()
  return {
    loads: results.map(figures),
    seconds,
    serverCpuPercent: (ticks1.user + ticks1.system - ticks0.user - ticks0.system) / clockTicks / seconds * 100,
    serverSystemCpuPercent: (ticks1.system - ticks0.system) / clockTicks / seconds * 100,
    peakRssMb,
    loadGeneratorCpuPercent: (ownCpu.user + ownCpu.system) / 1e6 / seconds * 100
  }
}

// ------------------------------------------------------------------------------------------------------ report

interface Row {
  scenario: string
  rps: number
  p50Ms: number
  p99Ms: number
  errors: number
  non2xx: number
  timeouts: number
  ok: number
  serverCpuPercent: number
  serverSystemCpuPercent: number
  peakRssMb: number
  loadGeneratorCpuPercent: number
  ratioToBaseline: number
}

interface Target { target: string, measured: string, met: boolean }

function table (rows: Row[]): string {
  const lines = [
    '| scenario | req/s | p50 ms | p99 ms | errors+non-2xx | server CPU % | peak RSS MB | ratio to baseline |',
    '|---|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const r of rows) {
    lines.push(`| ${r.scenario} | ${r.rps.toFixed(r.rps < 100 ? 1 : 0)} | ${r.p50Ms} | ${r.p99Ms} | ${r.errors + r.non2xx} | ` +
      `${r.serverCpuPercent.toFixed(0)} | ${r.peakRssMb.toFixed(1)} | ${r.ratioToBaseline.toFixed(3)} |`)
  }
  return lines.join('\n')
}

// ------------------------------------------------------------------------------------------------------ main

async function main (): Promise<number> {
  const cleanups: Array<{ what: string, run: () => Promise<void> }> = []
  const started = new Date()
  try {
    const pg = await postgresServer()
    cleanups.push({ what: 'stop PostgreSQL', run: pg.stop })
    checkInterrupted()
    const db = await benchDatabase(pg.url)
    cleanups.push({ what: `drop database ${db.name}`, run: db.drop })
    log(`database ${db.name} on PostgreSQL ${db.version}${pg.throwaway ? ' (throwaway)' : ''}`)

    log('argon2 limit: sequential hashes in this process')
    const argon2 = await argon2Limit()
    checkInterrupted()

    const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', DATABASE_URL: db.url, MIGRATE_ON_START: 'true' }
    let signingKey = 'from the environment'
    if ([env.JWT_PRIVATE_KEY, env.JWT_PRIVATE_KEY_FILE, env.JWT_SECRET].every(v => v === undefined || v === '')) {
      // What a production deploy uses (see README, Deploy): an Ed25519 key.
      env.JWT_PRIVATE_KEY = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
      signingKey = 'Ed25519 (EdDSA), generated for the run'
    }

    // The service runs compiled, as the image runs it: no TypeScript loader in the measured process.
    log('compiling the service (npm run build)')
    execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
    log('starting the service (bench/server.mjs over dist/)')
    const service = await startServer('service', './server.mjs', env)
    cleanups.push({ what: 'stop the service', run: async () => { await stopChild(service.child) } })
    const readyMs = await waitReady(service)
    const readyRssMb = await rssKb(service.pid) / 1024
    log(`service ready in ${readyMs.toFixed(0)} ms, ${readyRssMb.toFixed(1)} MB RSS (pid ${service.pid}, ${service.url})`)
    const baseline = await startServer('baseline', './baseline-server.mjs', { ...process.env, NODE_ENV: 'production' })
    cleanups.push({ what: 'stop the baseline server', run: async () => { await stopChild(baseline.child) } })
    log(`baseline server listening (pid ${baseline.pid}, ${baseline.url})`)

    // The user every login scenario logs in as.
    const username = 'bench_user'
    const registered = await fetch(`${service.url}/auth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, email: `${username}@example.com`, password: PASSWORD }),
      signal: AbortSignal.timeout(10_000)
    })
    if (registered.status !== 201) throw new Error(`could not register the bench user: ${registered.status} ${await registered.text()}`)
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

    const scenarios: Scenario[] = [
      { id: '1', server: baseline, loads: [{ label: '1 baseline GET / (bare Fastify)', options: async (duration) => ({ url: `${baseline.url}/`, connections: CONNECTIONS, duration }) }] },
      { id: '2', server: service, loads: [{ label: '2 GET /bench/protected', options: bearerGet('/bench/protected') }] },
      { id: '3', server: service, loads: [{ label: '3 GET /users/me', options: bearerGet('/users/me') }] },
      { id: '4', server: service, loads: [{ label: '4 POST /auth/token password (login)', options: passwordLogins(CONNECTIONS) }] },
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

    // Rounds alternate over the scenarios, so that noise on the shared box hits each of them.
    const measured: Record<string, Measured[]> = {}
    for (let r = 0; r < ROUNDS; r++) {
      for (const scenario of scenarios) {
        log(`round ${r + 1}/${ROUNDS}, scenario ${scenario.id}: ${WARMUP} s warm-up, ${DURATION} s measured`)
        const m = await runScenario(scenario)
        ;(measured[scenario.id] ??= []).push(m)
        for (const [i, load] of scenario.loads.entries()) {
          const f = m.loads[i]
          log(`  ${load.label}: ${f.rps.toFixed(1)} req/s, p50 ${f.p50} ms, p99 ${f.p99} ms, ${f.ok} 2xx, ${f.non2xx} non-2xx, ${f.errors} errors`)
        }
      }
    }

    const rows: Row[] = []
    const failures: string[] = []
    for (const scenario of scenarios) {
      const runs = measured[scenario.id]
      for (const [i, load] of scenario.loads.entries()) {
        const of = (pick: (f: LoadFigures) => number): number => median(runs.map(m => pick(m.loads[i])))
        const sum = (pick: (f: LoadFigures) => number): number => runs.reduce((n, m) => n + pick(m.loads[i]), 0)
        if (sum(f => f.ok) === 0) failures.push(`${load.label}: no 2xx answer at all`)
        rows.push({
          scenario: load.label,
          rps: of(f => f.rps),
          p50Ms: of(f => f.p50),
          p99Ms: of(f => f.p99),
          errors: sum(f => f.errors),
          non2xx: sum(f => f.non2xx),
          timeouts: sum(f => f.timeouts),
          ok: sum(f => f.ok),
          serverCpuPercent: median(runs.map(m => m.serverCpuPercent)),
          serverSystemCpuPercent: median(runs.map(m => m.serverSystemCpuPercent)),
          peakRssMb: Math.max(...runs.map(m => m.peakRssMb)),
          loadGeneratorCpuPercent: median(runs.map(m => m.loadGeneratorCpuPercent)),
          ratioToBaseline: 0
        })
      }
    }
    const baselineRps = rows[0].rps
    for (const row of rows) row.ratioToBaseline = baselineRps > 0 ? row.rps / baselineRps : 0
    const [, protectedRow, usersMeRow, loginRow, , , stormProtectedRow] = rows

    const loginOfLimit = loginRow.rps / argon2.logins
    const p99Bound = TARGETS.loginP99HashWalls * argon2.wallMsPerHash
    const peakRss = Math.max(...rows.map(r => r.peakRssMb))
    const targets: Target[] = [
      { target: `GET /bench/protected >= ${TARGETS.protectedRatio.toFixed(2)} of baseline req/s`, measured: protectedRow.ratioToBaseline.toFixed(3), met: protectedRow.ratioToBaseline >= TARGETS.protectedRatio },
      { target: `GET /users/me >= ${TARGETS.usersMeRatio.toFixed(2)} of baseline req/s`, measured: usersMeRow.ratioToBaseline.toFixed(3), met: usersMeRow.ratioToBaseline >= TARGETS.usersMeRatio },
      { target: `login req/s >= ${TARGETS.loginOfArgon2Limit.toFixed(2)} of the argon2 limit`, measured: `${loginOfLimit.toFixed(3)} (${loginRow.rps.toFixed(1)} of ${argon2.logins.toFixed(1)}/s)`, met: loginOfLimit >= TARGETS.loginOfArgon2Limit },
      { target: `login p99 <= ${TARGETS.loginP99HashWalls} x one hash's wall time`, measured: `${loginRow.p99Ms} ms vs ${p99Bound.toFixed(1)} ms`, met: loginRow.p99Ms <= p99Bound },
      { target: `GET /bench/protected p99 during the login storm < ${TARGETS.stormProtectedP99Ms} ms`, measured: `${stormProtectedRow.p99Ms} ms`, met: stormProtectedRow.p99Ms < TARGETS.stormProtectedP99Ms },
      { target: `peak RSS < ${TARGETS.peakRssMb} MB in every scenario`, measured: `${peakRss.toFixed(1)} MB`, met: peakRss < TARGETS.peakRssMb },
      { target: `ready (GET /health/ready 200) <= ${TARGETS.readyMs} ms after spawn`, measured: `${readyMs.toFixed(0)} ms`, met: readyMs <= TARGETS.readyMs }
    ]

    const { params } = argon2
    const runtime = [...RUNTIME.flags, ...(RUNTIME.nodeOptions === '' ? [] : [`NODE_OPTIONS=${RUNTIME.nodeOptions}`])].join(' ')
    const header = `${started.toISOString()}: PostgreSQL ${db.version}, node ${process.version} (${runtime}, as the Dockerfile), ${argon2.cores} cores (${cpus()[0]?.model ?? 'unknown CPU'}), ` +
      `${CONNECTIONS} connections unless said, ${WARMUP} s warm-up + ${DURATION} s measured per scenario` +
      `${ROUNDS > 1 ? `, medians of ${ROUNDS} alternating rounds` : ''}; load generator on the same machine`
    const argon2Line = `argon2 limit: ${argon2.cores} cores / ${argon2.cpuMsPerHash.toFixed(1)} ms CPU per hash ` +
      `(argon2id m=${params.memoryCost} t=${params.timeCost} p=${params.parallelism}, median of ${argon2.hashes} sequential hashes, ` +
      `${argon2.wallMsPerHash.toFixed(1)} ms wall each) = ${argon2.logins.toFixed(1)} logins/s; ` +
      `login scenario ${loginRow.rps.toFixed(1)}/s = ${loginOfLimit.toFixed(3)} of it; login p99 ${loginRow.p99Ms} ms vs 4 x hash wall = ${p99Bound.toFixed(1)} ms`
    const readyLine = `readiness: GET /health/ready answered 200 ${readyMs.toFixed(0)} ms after spawning \`node bench/server.mjs\` ` +
      `(port printed at ${service.listeningMs.toFixed(0)} ms; migrations applied to a fresh database at start; ${readyRssMb.toFixed(1)} MB RSS then)`
    const targetLines = ['| target | measured | |', '|---|---|---|', ...targets.map(t => `| ${t.target} | ${t.measured} | ${t.met ? 'met' : 'missed'} |`)]

    console.log(header)
    console.log('')
    console.log(table(rows))
    console.log('')
    console.log(argon2Line)
    console.log(readyLine)
    console.log('')
    console.log(targetLines.join('\n'))

    const report = {
      date: started.toISOString(),
      node: process.version,
      runtime: RUNTIME,
      cpu: cpus()[0]?.model,
      cores: argon2.cores,
      postgres: db.version,
      throwawayPostgres: pg.throwaway,
      signingKey,
      durationSeconds: DURATION,
      warmupSeconds: WARMUP,
      rounds: ROUNDS,
      connections: CONNECTIONS,
      stormLoginConnections: STORM_LOGIN_CONNECTIONS,
      clockTicks,
      rows: rows.map(r => ({ ...r, rps: round(r.rps), serverCpuPercent: round(r.serverCpuPercent), serverSystemCpuPercent: round(r.serverSystemCpuPercent), peakRssMb: round(r.peakRssMb), loadGeneratorCpuPercent: round(r.loadGeneratorCpuPercent), ratioToBaseline: round(r.ratioToBaseline, 3) })),
      runs: measured,
      argon2: { ...argon2, cpuMsPerHash: round(argon2.cpuMsPerHash, 2), wallMsPerHash: round(argon2.wallMsPerHash, 2), logins: round(argon2.logins), loginRatio: round(loginOfLimit, 3) },
      readiness: { readyMs: round(readyMs), listeningMs: round(service.listeningMs), rssMb: round(readyRssMb) },
      targets,
      failures
    }
    await mkdir(RESULTS, { recursive: true })
    const file = join(RESULTS, `bench-${started.toISOString().replace(/:/g, '-')}.json`)
    await writeFile(file, JSON.stringify(report, null, 2) + '\n')
    await writeFile(join(RESULTS, 'latest.json'), JSON.stringify(report, null, 2) + '\n')
    log(`wrote ${file} and bench/results/latest.json`)

    if (failures.length > 0) {
      console.error(`bench: the harness failed:\n  ${failures.join('\n  ')}`)
      return 1
    }
    return 0
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup.run()
      } catch (error) {
        console.error(`bench: could not ${cleanup.what}: ${(error as Error).message}`)
      }
    }
  }
}

// Ctrl-C or a SIGTERM: stop the load, then clean up as on any failure; a second signal kills the children at once.
// An exception outside main's flow does the same, with 60 s for the clean-up before the process exits anyway.
function stopEverything (reason: string): void {
  if (interrupted !== undefined) process.exit(130)
  interrupted = reason
  log(`${reason}: stopping`)
  for (const instance of activeCannons) instance.stop()
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { stopEverything(signal) })
process.on('uncaughtException', (error) => {
  console.error(`bench: ${error.stack ?? error.message}`)
  setTimeout(() => { process.exit(1) }, 60_000).unref()
  if (interrupted === undefined) stopEverything('an uncaught exception')
})
// A reader that went away (npm run bench | head) must not kill the harness before it has cleaned up.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})

main().then(
  (code) => { process.exit(code) },
  (error: unknown) => {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  }
)
