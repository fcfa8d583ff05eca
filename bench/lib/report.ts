// What a run found: medians over the rounds as a markdown table on stdout, the argon2 limit, the readiness, the
// targets (met / missed), and the same as JSON in bench/results/. Figures are reported, never asserted.
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Argon2Limit } from './argon2-limit.js'
import { chartPathsBeside, writeCharts } from './chart.js'
import { RUNTIME } from './children.js'
import type { RunOptions } from './cli.js'
import { clockTicks, type LoadFigures, type Measured } from './load.js'
import { median } from './median.js'
import type { LogoutStorm } from './logout-storm.js'
import { log } from './progress.js'
import { compareSizes, type ScaleComparison } from './scale.js'
import { CONNECTIONS, LOGIN_LEVELS, loginLabel, STORM_LOGIN_CONNECTIONS, type Scenario } from './scenarios.js'
import type { Seeded } from './seed.js'
import { verifierCost, verifierLine } from './verifier.js'

const RESULTS = fileURLToPath(new URL('../results/', import.meta.url))

const TARGETS = {
  protectedRatio: 0.75,
  usersMeRatio: 0.40,
  loginOfHashingCeiling: 0.85,
  /** Login p99 at each number of clients, in queueing bounds. */
  loginP99QueueBounds: 1.5,
  stormProtectedP99Ms: 25,
  peakRssMb: 200,
  /** Large against small: login p95 at most 1.1 times, /users/me req/s at least 0.9 times. */
  scaleLoginP95: 1.1,
  scaleUsersMeRps: 0.9,
  scaleSearchP99Ms: 10,
  /** A restart at the large size against one at the small size (medians), and under a second. */
  scaleReadyRatio: 1.2,
  scaleReadyMs: 1000,
  logoutsPerSecond: 1000,
  refusedWithinMs: 1000
}

export interface RunFacts {
  started: Date
  run: RunOptions
  postgres: { version: string, throwaway: boolean }
  signingKey: string
  argon2: Argon2Limit
  readiness: { readyMs: number, listeningMs: number, rssMb: number }
  /** The scale phase (--users above 0): each size's data and restarts. */
  scale?: Array<{ name: string, users: number, seeded: Seeded, restarts: Array<{ readyMs: number, rssMb: number }> }>
  storm?: LogoutStorm
}

export interface Row {
  scenario: string
  rps: number
  p50Ms: number
  p99Ms: number
  /** Only for the loads that record every latency (the scale logins). */
  p95Ms?: number
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

export interface Target { target: string, measured: string, met: boolean }

export interface LoginLevel {
  connections: number
  scenario: string
  rps: number
  p50Ms: number
  p99Ms: number
  /** max(1, clients / cores) x one hash's wall time: a login waits for the hashes queued before its own. */
  queueBoundMs: number
  p99OfBound: number
}

/** Login alone at each number of clients (the rows of LOGIN_LEVELS that ran), beside its queueing bound. */
export function loginLevels (rows: Row[], argon2: Pick<Argon2Limit, 'cores' | 'wallMsPerHash'>): LoginLevel[] {
  return LOGIN_LEVELS.flatMap((connections) => {
    const row = rows.find(r => r.scenario === loginLabel(connections))
    if (row === undefined) return []
    const queueBoundMs = Math.max(1, connections / argon2.cores) * argon2.wallMsPerHash
    return [{ connections, scenario: row.scenario, rps: row.rps, p50Ms: row.p50Ms, p99Ms: row.p99Ms, queueBoundMs, p99OfBound: row.p99Ms / queueBoundMs }]
  })
}

/** One row per load, medians over the rounds (sums for the counts); failures are loads that got no 2xx at all. */
export function summarizeRounds (scenarios: Scenario[], measured: Record<string, Measured[]>): { rows: Row[], failures: string[] } {
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
        ...(runs[0].loads[i].p95 === undefined ? {} : { p95Ms: of(f => f.p95 ?? 0) }),
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
  return { rows, failures }
}

export function checkTargets (rows: Row[], facts: RunFacts): Target[] {
  const { protectedRow, usersMeRow, loginRow, stormProtectedRow } = namedRows(rows)
  const { ceiling } = facts.argon2
  const loginOfCeiling = loginRow.rps / ceiling.perSecond
  const serviceRows = rows.filter(r => !r.scenario.startsWith('s-') && !r.scenario.startsWith('v'))
  const peakRss = Math.max(...serviceRows.map(r => r.peakRssMb))
  const targets: Target[] = [
    { target: `GET /bench/protected >= ${TARGETS.protectedRatio.toFixed(2)} of baseline req/s`, measured: protectedRow.ratioToBaseline.toFixed(3), met: protectedRow.ratioToBaseline >= TARGETS.protectedRatio },
    { target: `GET /users/me >= ${TARGETS.usersMeRatio.toFixed(2)} of baseline req/s`, measured: usersMeRow.ratioToBaseline.toFixed(3), met: usersMeRow.ratioToBaseline >= TARGETS.usersMeRatio },
    { target: `login req/s >= ${TARGETS.loginOfHashingCeiling.toFixed(2)} of ${ceiling.threads} threads that only hash`, measured: `${loginOfCeiling.toFixed(3)} (${loginRow.rps.toFixed(1)} of ${ceiling.perSecond.toFixed(1)}/s)`, met: loginOfCeiling >= TARGETS.loginOfHashingCeiling },
    ...loginLevels(rows, facts.argon2).map(l => ({
      target: `login p99 at ${l.connections} client${l.connections === 1 ? '' : 's'} <= ${TARGETS.loginP99QueueBounds} x the queueing bound`,
      measured: `${l.p99Ms} ms = ${l.p99OfBound.toFixed(2)} x ${l.queueBoundMs.toFixed(1)} ms`,
      met: l.p99OfBound <= TARGETS.loginP99QueueBounds
    })),
    { target: `GET /bench/protected p99 during the login storm < ${TARGETS.stormProtectedP99Ms} ms`, measured: `${stormProtectedRow.p99Ms} ms`, met: stormProtectedRow.p99Ms < TARGETS.stormProtectedP99Ms },
    { target: `peak RSS < ${TARGETS.peakRssMb} MB in every scenario of the service`, measured: `${peakRss.toFixed(1)} MB`, met: peakRss < TARGETS.peakRssMb }
  ]
  if (facts.scale !== undefined) targets.push(...scaleTargets(rows, facts.scale))
  if (facts.storm !== undefined) {
    const { storm } = facts
    targets.push(
      { target: `logouts >= ${TARGETS.logoutsPerSecond}/s on one instance`, measured: `${storm.logoutsPerSecond.toFixed(0)}/s (${storm.sessions} sessions)`, met: storm.logoutsPerSecond >= TARGETS.logoutsPerSecond },
      {
        target: `each logged-out session refused on a second instance within ${TARGETS.refusedWithinMs} ms`,
        measured: `max ${storm.refusedOnSecond.maxMs.toFixed(0)} ms, p99 ${storm.refusedOnSecond.p99Ms.toFixed(0)} ms, ${storm.refusedOnSecond.missing} missing`,
        met: storm.refusedOnSecond.maxMs <= TARGETS.refusedWithinMs && storm.refusedOnSecond.missing === 0
      }
    )
  }
  return targets
}

const medianReady = (size: NonNullable<RunFacts['scale']>[number]): number => median(size.restarts.map(r => r.readyMs))

function scaleTargets (rows: Row[], scale: NonNullable<RunFacts['scale']>): Target[] {
  const pairs = compareSizes(rows, scale)
  const pair = (route: ScaleComparison['route']): ScaleComparison | undefined => pairs.find(p => p.route === route)
  const [small, large] = scale
  const n = large.users.toLocaleString('en')
  const targets: Target[] = []
  const login = pair('login')
  if (login?.small.p95Ms !== undefined && login.large.p95Ms !== undefined) {
    const ratio = login.large.p95Ms / login.small.p95Ms
    targets.push({ target: `login p95 at ${n} users <= ${TARGETS.scaleLoginP95} x at ${small.users.toLocaleString('en')}`, measured: `${ratio.toFixed(3)} (${login.large.p95Ms} vs ${login.small.p95Ms} ms)`, met: ratio <= TARGETS.scaleLoginP95 })
  }
  const me = pair('me')
  if (me !== undefined) targets.push({ target: `GET /users/me req/s at ${n} users >= ${TARGETS.scaleUsersMeRps} x at ${small.users.toLocaleString('en')}`, measured: `${me.rpsRatio.toFixed(3)} (${me.large.rps.toFixed(0)} vs ${me.small.rps.toFixed(0)})`, met: me.rpsRatio >= TARGETS.scaleUsersMeRps })
  const search = pair('search')
  if (search !== undefined) targets.push({ target: `admin prefix search p99 at ${n} users < ${TARGETS.scaleSearchP99Ms} ms`, measured: `${search.large.p99Ms} ms`, met: search.large.p99Ms < TARGETS.scaleSearchP99Ms })
  const readyRatio = medianReady(large) / medianReady(small)
  targets.push(
    { target: `restart ready with ${large.seeded.endedSessions.toLocaleString('en')} ended sessions <= ${TARGETS.scaleReadyRatio} x on ${small.users.toLocaleString('en')} users`, measured: `${readyRatio.toFixed(3)} (${medianReady(large).toFixed(0)} vs ${medianReady(small).toFixed(0)} ms, medians of ${large.restarts.length})`, met: readyRatio <= TARGETS.scaleReadyRatio },
    { target: `restart ready at ${n} users < ${TARGETS.scaleReadyMs} ms`, measured: `${medianReady(large).toFixed(0)} ms`, met: medianReady(large) < TARGETS.scaleReadyMs }
  )
  const largePeak = Math.max(...rows.filter(r => r.scenario.startsWith('s-') && r.scenario.includes('-large ')).map(r => r.peakRssMb), ...large.restarts.map(r => r.rssMb))
  targets.push({ target: `peak RSS at ${n} users (with the ended sessions) < ${TARGETS.peakRssMb} MB`, measured: `${largePeak.toFixed(1)} MB`, met: largePeak < TARGETS.peakRssMb })
  return targets
}

/** The report on stdout, in markdown. */
export function printReport (facts: RunFacts, rows: Row[], targets: Target[]): void {
  const { started, run, argon2, readiness } = facts
  const { params } = argon2
  const { loginRow, protectedRow, scopedRow } = namedRows(rows)
  const { loginOfLimit } = loginAgainstArgon2(loginRow, argon2)
  const scopeLine = `scope check: GET /bench/scoped (token, session and a users:read check) at ${(scopedRow.rps / protectedRow.rps).toFixed(3)} ` +
    'of GET /bench/protected (token and session) in req/s'
  const runtime = [...RUNTIME.flags, ...(RUNTIME.nodeOptions === '' ? [] : [`NODE_OPTIONS=${RUNTIME.nodeOptions}`])].join(' ')
  const header = `${started.toISOString()}: PostgreSQL ${facts.postgres.version}, node ${process.version} (${runtime}, as the Dockerfile), ${argon2.cores} cores (${cpus()[0]?.model ?? 'unknown CPU'}), ` +
    `${CONNECTIONS} connections unless said, ${run.warmupSeconds} s warm-up + ${run.durationSeconds} s measured per scenario` +
    `${run.rounds > 1 ? `, medians of ${run.rounds} alternating rounds` : ''}; load generator on the same machine`
  const argon2Line = `argon2 limit: ${argon2.cores} cores / ${argon2.cpuMsPerHash.toFixed(1)} ms CPU per hash ` +
    `(argon2id m=${params.memoryCost} t=${params.timeCost} p=${params.parallelism}, median of ${argon2.hashes} sequential hashes, ` +
    `${argon2.wallMsPerHash.toFixed(1)} ms wall each) = ${argon2.logins.toFixed(1)} logins/s; ` +
    `login scenario ${loginRow.rps.toFixed(1)}/s = ${loginOfLimit.toFixed(3)} of it; ${argon2.ceiling.threads} threads that only hash: ` +
    `${argon2.ceiling.perSecond.toFixed(1)}/s (${argon2.ceiling.hashes} hashes in ${argon2.ceiling.seconds.toFixed(1)} s), login ${(loginRow.rps / argon2.ceiling.perSecond).toFixed(3)} of that`
  const readyLine = `readiness: GET /health/ready answered 200 ${readiness.readyMs.toFixed(0)} ms after spawning \`node bench/server.mjs\` ` +
    `(port printed at ${readiness.listeningMs.toFixed(0)} ms; migrations applied to a fresh database at start; ${readiness.rssMb.toFixed(1)} MB RSS then)`
  const targetLines = ['| target | measured | |', '|---|---|---|', ...targets.map(t => `| ${t.target} | ${t.measured} | ${t.met ? 'met' : 'missed'} |`)]

  console.log(header)
  console.log('')
  console.log(table(rows))
  console.log('')
  console.log(argon2Line)
  console.log(loginLevelsLine(rows, argon2))
  console.log(scopeLine)
  console.log(verifierLine(rows))
  console.log(readyLine)
  if (facts.scale !== undefined) {
    console.log('')
    console.log(scaleTable(rows, facts.scale))
  }
  if (facts.storm !== undefined) console.log(stormLine(facts.storm))
  console.log('')
  console.log(targetLines.join('\n'))
}

/** The same as JSON, in bench/results/ under the run's date and as latest.json, with every round's figures. */
export async function writeReport (facts: RunFacts, rows: Row[], measured: Record<string, Measured[]>, targets: Target[], failures: string[]): Promise<void> {
  const { started, run, argon2, readiness } = facts
  const { loginOfLimit } = loginAgainstArgon2(namedRows(rows).loginRow, argon2)
  const levels = loginLevels(rows, argon2).map(l => ({ ...l, rps: round(l.rps), queueBoundMs: round(l.queueBoundMs), p99OfBound: round(l.p99OfBound, 2) }))
  const report = {
    date: started.toISOString(),
    node: process.version,
    runtime: RUNTIME,
    cpu: cpus()[0]?.model,
    cores: argon2.cores,
    postgres: facts.postgres.version,
    throwawayPostgres: facts.postgres.throwaway,
    signingKey: facts.signingKey,
    durationSeconds: run.durationSeconds,
    warmupSeconds: run.warmupSeconds,
    rounds: run.rounds,
    connections: CONNECTIONS,
    stormLoginConnections: STORM_LOGIN_CONNECTIONS,
    clockTicks,
    rows: rows.map(r => ({ ...r, rps: round(r.rps), serverCpuPercent: round(r.serverCpuPercent), serverSystemCpuPercent: round(r.serverSystemCpuPercent), peakRssMb: round(r.peakRssMb), loadGeneratorCpuPercent: round(r.loadGeneratorCpuPercent), ratioToBaseline: round(r.ratioToBaseline, 3) })),
    runs: measured,
    argon2: { ...argon2, cpuMsPerHash: round(argon2.cpuMsPerHash, 2), wallMsPerHash: round(argon2.wallMsPerHash, 2), logins: round(argon2.logins), loginRatio: round(loginOfLimit, 3) },
    readiness: { readyMs: round(readiness.readyMs), listeningMs: round(readiness.listeningMs), rssMb: round(readiness.rssMb) },
    loginLevels: levels,
    verifier: verifierCost(rows),
    ...(facts.scale === undefined
      ? {}
      : {
          scale: {
            sizes: facts.scale.map(s => ({ ...s, restarts: s.restarts.map(r => ({ readyMs: round(r.readyMs), rssMb: round(r.rssMb) })), seeded: { ...s.seeded, seconds: round(s.seeded.seconds) } })),
            routes: compareSizes(rows, facts.scale).map(p => ({ route: p.route, small: p.small.scenario, large: p.large.scenario, rpsRatio: round(p.rpsRatio, 3) }))
          }
        }),
    ...(facts.storm === undefined ? {} : { logoutStorm: facts.storm }),
    targets,
    failures
  }
  await mkdir(RESULTS, { recursive: true })
  const file = join(RESULTS, `bench-${started.toISOString().replace(/:/g, '-')}.json`)
  await writeFile(file, JSON.stringify(report, null, 2) + '\n')
  await writeFile(join(RESULTS, 'latest.json'), JSON.stringify(report, null, 2) + '\n')
  log(`wrote ${file} and bench/results/latest.json`)
  const charts = await writeCharts(report, chartPathsBeside(file))
  log(`drew ${charts.join(' and ')}`)
}

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

/** The rows the targets read, found by their scenario's label (bench/lib/scenarios.ts). */
function namedRows (rows: Row[]): { protectedRow: Row, scopedRow: Row, usersMeRow: Row, loginRow: Row, stormProtectedRow: Row } {
  const row = (prefix: string): Row => {
    const found = rows.find(r => r.scenario.startsWith(prefix))
    if (found === undefined) throw new Error(`bench: no scenario labelled '${prefix}...'`)
    return found
  }
  return { protectedRow: row('2 '), scopedRow: row('2s '), usersMeRow: row('3 '), loginRow: row('4 '), stormProtectedRow: row('7 storm: GET') }
}

function loginLevelsLine (rows: Row[], argon2: Argon2Limit): string {
  const levels = loginLevels(rows, argon2).map(l =>
    `${l.connections} conn ${l.rps.toFixed(1)}/s, p50 ${l.p50Ms} ms, p99 ${l.p99Ms} ms = ${l.p99OfBound.toFixed(2)} x bound ${l.queueBoundMs.toFixed(1)} ms`)
  return `login by concurrency (queueing bound: max(1, clients / ${argon2.cores} cores) x ${argon2.wallMsPerHash.toFixed(1)} ms hash wall): ${levels.join('; ')}`
}

function loginAgainstArgon2 (loginRow: Row, argon2: Argon2Limit): { loginOfLimit: number } {
  return { loginOfLimit: loginRow.rps / argon2.logins }
}

/** The scale scenarios, small beside large, and the restarts. */
function scaleTable (rows: Row[], scale: NonNullable<RunFacts['scale']>): string {
  const [small, large] = scale
  const k = (n: number): string => n.toLocaleString('en')
  const lines = [
    `scale: ${k(small.users)} users beside ${k(large.users)} users (${k(large.seeded.sessions)} sessions, ${k(large.seeded.endedSessions)} ended in the last minutes; seeded by SQL in ${large.seeded.seconds.toFixed(0)} s)`,
    '',
    `| scale scenario | req/s ${k(small.users)} | req/s ${k(large.users)} | large/small | p95 ms | p99 ms ${k(small.users)} | p99 ms ${k(large.users)} | peak RSS MB (large) |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const p of compareSizes(rows, scale)) {
    const p95 = p.small.p95Ms === undefined ? '' : `${p.small.p95Ms} / ${p.large.p95Ms ?? ''}`
    lines.push(`| ${p.small.scenario.replace(/^s-\S+ /, '').replace(/ \[.*\]$/, '')} | ${p.small.rps.toFixed(p.small.rps < 100 ? 1 : 0)} | ${p.large.rps.toFixed(p.large.rps < 100 ? 1 : 0)} | ` +
      `${p.rpsRatio.toFixed(3)} | ${p95} | ${p.small.p99Ms} | ${p.large.p99Ms} | ${p.large.peakRssMb.toFixed(1)} |`)
  }
  const restarts = scale.map(s => `${s.name} (${k(s.users)} users): ${s.restarts.map(r => `${r.readyMs.toFixed(0)} ms`).join(', ')}, ` +
    `median ${medianReady(s).toFixed(0)} ms, RSS ${Math.max(...s.restarts.map(r => r.rssMb)).toFixed(1)} MB`)
  lines.push('', `restart (node ${RUNTIME.flags.join(' ')} ${RUNTIME.script}, spawn to GET /health/ready 200, alternating): ${restarts.join('; ')}`)
  return lines.join('\n')
}

function stormLine (storm: LogoutStorm): string {
  return `logout storm: ${storm.sessions} sessions logged out on one instance in ${storm.seconds.toFixed(2)} s = ${storm.logoutsPerSecond.toFixed(0)}/s ` +
    `(${storm.logoutErrors} errors); refused on a second instance after p50 ${storm.refusedOnSecond.p50Ms.toFixed(0)} ms, p99 ${storm.refusedOnSecond.p99Ms.toFixed(0)} ms, ` +
    `max ${storm.refusedOnSecond.maxMs.toFixed(0)} ms (${storm.refusedOnSecond.missing} missing); feed to ${storm.feed.subscribers} subscribers: p50 ${storm.feed.p50Ms.toFixed(0)} ms, ` +
    `p99 ${storm.feed.p99Ms.toFixed(0)} ms, max ${storm.feed.maxMs.toFixed(0)} ms (${storm.feed.missing} missing)${storm.notes.length > 0 ? `; ${storm.notes.join('; ')}` : ''}`
}

const round = (x: number, digits = 1): number => Number(x.toFixed(digits))
