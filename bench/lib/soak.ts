// The soak scenario (npm run bench -- --soak MINUTES): the service on a fresh database, its capacity for a mix of
// requests measured unthrottled, then the same mix at half of that for MINUTES one-minute autocannon runs, each
// reported with its req/s, latency, errors and the service's RSS. Whether RSS grew after the warm-up (the first
// minute) is reported, never asserted: as for the harness, the exit code is 1 only when the run itself failed.
import { mkdir, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type autocannon from 'autocannon'
import { alive, compileService, RUNTIME, serviceEnvironment, startServer, stopServer, waitReady, type Server } from './children.js'
import type { RunOptions } from './cli.js'
import { openBenchDatabase } from './database.js'
import { runCleanups, type Cleanup } from './cleanups.js'
import { checkInterrupted } from './interruption.js'
import { cannon, clockTicks, drain, measure, rssKb, type Measured } from './load.js'
import { log } from './progress.js'
import { CONNECTIONS, PASSWORD, registerAdmin } from './scenarios.js'

const RESULTS = fileURLToPath(new URL('../results/', import.meta.url))
const MINUTE_SECONDS = 60
/** RSS at a minute's end above the second minute's by more than this share: growth. */
const GROWTH_SHARE = 0.10

type Kind = 'me' | 'protected' | 'refresh' | 'login'

const PATHS: Record<Kind, string> = {
  me: 'GET /users/me',
  protected: 'GET /bench/protected',
  refresh: 'POST /auth/token refresh_token (rotation)',
  login: 'POST /auth/token password (login)'
}

// What each connection sends, in order, round and round. One login in 200: at 1 in 100 the mix's p99 would sit on
// the boundary between the logins (an argon2 hash each) and everything else, and flip between the two from minute to
// minute; at 1 in 200 the p99 is the tail of the cheap requests.
const BLOCK: Kind[] = ['me', 'me', 'me', 'protected', 'me', 'me', 'me', 'me', 'me', 'protected', 'refresh', 'me', 'me', 'me', 'me', 'me', 'protected', 'me', 'me', 'me']
const CYCLE: Kind[] = Array.from({ length: 10 }, () => BLOCK).flat().map((kind, i) => i === 0 ? 'login' : kind)

export const mixLine = (): string => {
  const count = (kind: Kind): number => CYCLE.filter(k => k === kind).length
  const parts = (['me', 'protected', 'refresh', 'login'] as const).map(kind =>
    `${count(kind)} ${PATHS[kind]} (${(count(kind) / CYCLE.length * 100).toFixed(1)}%)`)
  return `per connection, a cycle of ${CYCLE.length} requests: ${parts.join(', ')}; each connection has a session of its own ` +
    '(logged in before each run) whose bearer token and refresh token are replaced by every login and rotation'
}

interface Minute {
  minute: number
  rps: number
  p50Ms: number
  p99Ms: number
  errors: number
  timeouts: number
  non2xx: number
  ok: number
  serverCpuPercent: number
  peakRssMb: number
  endRssMb: number
  loadGeneratorCpuPercent: number
}

interface Verdict {
  /** null: fewer than three minutes, so no post-warm-up minute to compare with the second. */
  growth: boolean | null
  text: string
  rssGrowthMb?: number
  rssGrowthPercent?: number
  peakRssGrowthMb?: number
  p99Ratio?: number | null
}

export async function soakRun (run: RunOptions): Promise<number> {
  const cleanups: Cleanup[] = []
  const started = new Date()
  const failures: string[] = []
  try {
    const { pg, db } = await openBenchDatabase(cleanups)

    const { env, signingKey } = serviceEnvironment(db.url)
    log('compiling the service (npm run build)')
    compileService()
    checkInterrupted()
    log('starting the service (bench/server.mjs over dist/)')
    const service = await startServer('service', './server.mjs', env)
    cleanups.push({ what: 'stop the service', run: async () => { await stopServer(service) } })
    const readyMs = await waitReady(service)
    const readyRssMb = await rssKb(service.pid) / 1024
    log(`service ready in ${readyMs.toFixed(0)} ms, ${readyRssMb.toFixed(1)} MB RSS (pid ${service.pid}, ${service.url})`)

    const mix = await mixedLoad(service, db.url)
    log(`calibration: the mix unthrottled, ${run.warmupSeconds} s warm-up, ${run.durationSeconds} s measured`)
    if (run.warmupSeconds > 0) await cannon(await mix(run.warmupSeconds))
    await drain(service)
    checkInterrupted()
    if (!alive(service.child)) throw new Error('the service exited during the warm-up')
    const calibration = await measure(service, [await mix(run.durationSeconds)])
    await drain(service)
    checkInterrupted()
    const capacity = calibration.loads[0]
    log(`  capacity ${capacity.rps.toFixed(1)} req/s, p50 ${capacity.p50} ms, p99 ${capacity.p99} ms, ${capacity.ok} 2xx, ${capacity.non2xx} non-2xx, ${capacity.errors} errors`)
    if (capacity.ok === 0) failures.push('calibration: no 2xx answer at all')
    const rate = Math.max(CONNECTIONS, Math.round(capacity.rps / 2))

    const minutes: Minute[] = []
    for (let m = 1; m <= run.soakMinutes && failures.length === 0; m++) {
      checkInterrupted()
      log(`soak minute ${m}/${run.soakMinutes}: ${rate} req/s (half of the capacity)`)
      const measured = await measure(service, [{ ...await mix(MINUTE_SECONDS), overallRate: rate }])
      const serviceAlive = alive(service.child)
      const endRssMb = serviceAlive ? await rssKb(service.pid).catch(() => 0) / 1024 : 0
      checkInterrupted()
      const minute = minuteFigures(m, measured, endRssMb)
      minutes.push(minute)
      log(`  ${minute.rps.toFixed(1)} req/s, p50 ${minute.p50Ms} ms, p99 ${minute.p99Ms} ms, ${minute.ok} 2xx, ${minute.non2xx} non-2xx, ` +
        `${minute.errors} errors, peak RSS ${minute.peakRssMb.toFixed(1)} MB, ${endRssMb.toFixed(1)} MB at the end`)
      if (!serviceAlive) failures.push(`minute ${m}: the service exited (${service.child.exitCode ?? service.child.signalCode})`)
      else if (minute.ok === 0) failures.push(`minute ${m}: no 2xx answer at all`)
    }
    // Logins the last run gave up on still finish on the service, rather than be cut off by its shutdown.
    await drain(service)

    const verdict = judge(minutes)
    const facts = {
      date: started.toISOString(),
      node: process.version,
      runtime: RUNTIME,
      cpu: cpus()[0]?.model,
      cores: availableParallelism(),
      postgres: db.version,
      throwawayPostgres: pg.throwaway,
      signingKey,
      connections: CONNECTIONS,
      mix: { cycle: CYCLE.length, counts: Object.fromEntries((Object.keys(PATHS) as Kind[]).map(k => [PATHS[k], CYCLE.filter(c => c === k).length])), text: mixLine() },
      warmupSeconds: run.warmupSeconds,
      calibrationSeconds: run.durationSeconds,
      soakMinutes: run.soakMinutes,
      capacityRps: round(capacity.rps),
      targetRps: rate,
      clockTicks,
      readiness: { readyMs: round(readyMs), rssMb: round(readyRssMb) },
      calibration: { ...capacity, serverCpuPercent: round(calibration.serverCpuPercent), peakRssMb: round(calibration.peakRssMb) },
      minutes,
      verdict,
      failures
    }
    printReport(facts, minutes, verdict, capacity.rps, rate, calibration)
    await mkdir(RESULTS, { recursive: true })
    const file = join(RESULTS, `soak-${started.toISOString().replace(/:/g, '-')}.json`)
    await writeFile(file, JSON.stringify(facts, null, 2) + '\n')
    log(`wrote ${file}`)

    if (failures.length > 0) {
      console.error(`bench: the soak failed:\n  ${failures.join('\n  ')}`)
      return 1
    }
    return 0
  } finally {
    await runCleanups(cleanups)
  }
}

/**
 * Registers the soak's user (an administrator, as the harness's, so that its tokens carry scopes) and returns the
 * mix's options for a run of the given seconds: a fresh session per connection, logged in before the run.
 */
async function mixedLoad (service: Server, databaseUrl: string): Promise<(seconds: number) => Promise<autocannon.Options>> {
  const username = 'soak_user'
  await registerAdmin(service, databaseUrl, username)

  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const loginBody = new URLSearchParams({ grant_type: 'password', username, password: PASSWORD }).toString()
  interface Session { access: string, refresh: string }
  const login = async (): Promise<Session> => {
    const res = await fetch(`${service.url}/auth/token`, { method: 'POST', headers: form, body: loginBody, signal: AbortSignal.timeout(10_000) })
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`)
    const tokens = await res.json() as { access_token: string, refresh_token: string }
    return { access: tokens.access_token, refresh: tokens.refresh_token }
  }
  const keep = (session: Session) => (status: number, body: string): void => {
    if (status !== 200) return
    const tokens = JSON.parse(body) as { access_token: string, refresh_token: string }
    session.access = tokens.access_token
    session.refresh = tokens.refresh_token
  }
  // A connection's requests go one at a time, so its refresh chain never races itself (no reuse detection).
  const requests = (session: Session): autocannon.Request[] => CYCLE.map((kind): autocannon.Request => {
    switch (kind) {
      case 'login':
        return { method: 'POST', path: '/auth/token', headers: form, body: loginBody, onResponse: keep(session) }
      case 'refresh':
        return {
          method: 'POST',
          path: '/auth/token',
          headers: form,
          setupRequest: (request) => ({ ...request, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: session.refresh }).toString() }),
          onResponse: keep(session)
        }
      default:
        return {
          method: 'GET',
          path: kind === 'me' ? '/users/me' : '/bench/protected',
          setupRequest: (request) => ({ ...request, headers: { ...request.headers, authorization: `Bearer ${session.access}` } })
        }
    }
  })

  return async (seconds) => {
    // Fresh sessions for every run: a run (a minute, or a long calibration) may outlast ACCESS_TOKEN_TTL otherwise.
    const sessions = await Promise.all(Array.from({ length: CONNECTIONS }, login))
    let next = 0
    return {
      url: service.url,
      connections: CONNECTIONS,
      duration: seconds,
      // Requests set per connection: autocannon's top-level ones are shared by all connections.
      setupClient: (client) => { client.setRequests(requests(sessions[next++ % sessions.length])) }
    }
  }
}

function minuteFigures (minute: number, m: Measured, endRssMb: number): Minute {
  const f = m.loads[0]
  return {
    minute,
    rps: round(f.rps),
    p50Ms: f.p50,
    p99Ms: f.p99,
    errors: f.errors,
    timeouts: f.timeouts,
    non2xx: f.non2xx,
    ok: f.ok,
    serverCpuPercent: round(m.serverCpuPercent),
    peakRssMb: round(m.peakRssMb),
    endRssMb: round(endRssMb),
    loadGeneratorCpuPercent: round(m.loadGeneratorCpuPercent)
  }
}

/** The first minute is the warm-up: the last minute against the second. */
function judge (minutes: Minute[]): Verdict {
  if (minutes.length < 3) {
    const text = minutes.length <= 1
      ? 'no post-warm-up minute to compare (minute 1 is the warm-up): run --soak 3 or more for a verdict'
      : 'one post-warm-up minute only (minute 2): nothing to compare it with; run --soak 3 or more for a verdict'
    return { growth: null, text }
  }
  const second = minutes[1]
  const last = minutes[minutes.length - 1]
  const rssGrowthMb = last.endRssMb - second.endRssMb
  const rssGrowthPercent = second.endRssMb > 0 ? rssGrowthMb / second.endRssMb * 100 : 0
  const p99Ratio = second.p99Ms > 0 ? last.p99Ms / second.p99Ms : null
  const growth = rssGrowthPercent > GROWTH_SHARE * 100
  const text = `${growth ? 'growth' : 'no growth after warm-up'}: RSS at the minute's end ${second.endRssMb.toFixed(1)} MB (minute 2) -> ` +
    `${last.endRssMb.toFixed(1)} MB (minute ${last.minute}), ${signed(rssGrowthMb)} MB = ${signed(rssGrowthPercent)}% ` +
    `(growth: more than +${GROWTH_SHARE * 100}%); peak RSS ${second.peakRssMb.toFixed(1)} -> ${last.peakRssMb.toFixed(1)} MB; ` +
    `p99 ${second.p99Ms} -> ${last.p99Ms} ms (x${p99Ratio === null ? ' n/a' : p99Ratio.toFixed(2)})`
  return { growth, text, rssGrowthMb: round(rssGrowthMb), rssGrowthPercent: round(rssGrowthPercent), peakRssGrowthMb: round(last.peakRssMb - second.peakRssMb), p99Ratio: p99Ratio === null ? null : round(p99Ratio, 2) }
}

function printReport (facts: { date: string, postgres: string, cores: number, readiness: { readyMs: number, rssMb: number } }, minutes: Minute[], verdict: Verdict, capacity: number, rate: number, calibration: Measured): void {
  const runtime = [...RUNTIME.flags, ...(RUNTIME.nodeOptions === '' ? [] : [`NODE_OPTIONS=${RUNTIME.nodeOptions}`])].join(' ')
  const c = calibration.loads[0]
  const lines = [
    `${facts.date}: soak, PostgreSQL ${facts.postgres}, node ${process.version} (${runtime}, as the Dockerfile), ${facts.cores} cores ` +
      `(${cpus()[0]?.model ?? 'unknown CPU'}), ${CONNECTIONS} connections; load generator on the same machine`,
    '',
    `mix: ${mixLine()}`,
    `capacity (the mix unthrottled, ${c.seconds.toFixed(0)} s after a warm-up): ${capacity.toFixed(1)} req/s, p50 ${c.p50} ms, p99 ${c.p99} ms, ` +
      `${c.errors + c.non2xx} errors+non-2xx, server CPU ${calibration.serverCpuPercent.toFixed(0)}%, peak RSS ${calibration.peakRssMb.toFixed(1)} MB; ` +
      `soak at ${rate} req/s (half), one ${MINUTE_SECONDS} s autocannon run per minute`,
    // autocannon's overallRate is per second: a connection sends its share as fast as it can, then waits for the next.
    'the soak\'s latencies include the queueing of autocannon\'s per-second bursts (overallRate): compare the minutes with each other, not with the capacity run',
    `readiness: ${facts.readiness.readyMs.toFixed(0)} ms, ${facts.readiness.rssMb.toFixed(1)} MB RSS`,
    '',
    '| minute | req/s | p50 ms | p99 ms | errors+non-2xx | server CPU % | peak RSS MB | RSS at end MB |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...minutes.map(m => `| ${m.minute}${m.minute === 1 ? ' (warm-up)' : ''} | ${m.rps.toFixed(0)} | ${m.p50Ms} | ${m.p99Ms} | ` +
      `${m.errors + m.non2xx} | ${m.serverCpuPercent.toFixed(0)} | ${m.peakRssMb.toFixed(1)} | ${m.endRssMb.toFixed(1)} |`),
    '',
    `verdict (reported, not asserted): ${verdict.text}`
  ]
  console.log(lines.join('\n'))
}

const round = (x: number, digits = 1): number => Number(x.toFixed(digits))
const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`
