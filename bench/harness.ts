// Load-test harness: npm run bench [-- --duration N] [--warmup N] [--rounds N] [--users N] [--soak MINUTES: the soak alone]
//
// Runs the real service (bench/server.mjs over the compiled dist/) on a real PostgreSQL, in a fresh database it
// creates and drops, beside a bare Fastify app (bench/baseline-server.mjs) as the physical reference; both are child
// processes on 127.0.0.1. Each scenario is warmed up (discarded), then measured with autocannon; --rounds N repeats
// the whole sequence, alternating, and reports medians. The report goes to stdout and bench/results/ (JSON and two SVG
// charts; npm run bench:chart redraws them from a saved JSON), progress to stderr. Figures are never asserted: the
// exit code is non-zero only when the harness itself fails (a server did not start, a scenario got no 2xx answer at
// all), 2 on bad arguments, 130 on a second Ctrl-C.
import { argon2Limit } from './lib/argon2-limit.js'
import { runCleanups, type Cleanup } from './lib/cleanups.js'
import { compileService, serviceEnvironment, startServer, stopServer, waitReady } from './lib/children.js'
import { readRunOptions, SMALL_USERS, type RunOptions } from './lib/cli.js'
import { benchDatabase, openBenchDatabase } from './lib/database.js'
import { checkInterrupted, interrupt, interrupted } from './lib/interruption.js'
import { rssKb } from './lib/load.js'
import { logoutStorm } from './lib/logout-storm.js'
import { log } from './lib/progress.js'
import { checkTargets, printReport, summarizeRounds, writeReport, type RunFacts } from './lib/report.js'
import { scalePhase } from './lib/scale.js'
import { benchScenarios, runRounds } from './lib/scenarios.js'
import { verifierScenarios } from './lib/verifier.js'

/** Sessions the logout storm ends (each made by SQL, not by a login). */
const STORM_SESSIONS = 2000

async function main (run: RunOptions): Promise<number> {
  const cleanups: Cleanup[] = []
  const started = new Date()
  try {
    const { pg, db } = await openBenchDatabase(cleanups)

    log('argon2 limit: sequential hashes in this process')
    const argon2 = await argon2Limit()
    checkInterrupted()

    const { env, signingKey } = serviceEnvironment(db.url)
    log('compiling the service (npm run build)')
    compileService()
    log('starting the service (bench/server.mjs over dist/)')
    const service = await startServer('service', './server.mjs', env)
    cleanups.push({ what: 'stop the service', run: async () => { await stopServer(service) } })
    const readyMs = await waitReady(service)
    const readyRssMb = await rssKb(service.pid) / 1024
    log(`service ready in ${readyMs.toFixed(0)} ms, ${readyRssMb.toFixed(1)} MB RSS (pid ${service.pid}, ${service.url})`)
    const baseline = await startServer('baseline', './baseline-server.mjs', { ...process.env, NODE_ENV: 'production' })
    cleanups.push({ what: 'stop the baseline server', run: async () => { await stopServer(baseline) } })
    log(`baseline server listening (pid ${baseline.pid}, ${baseline.url})`)

    const scenarios = await benchScenarios(service, baseline, db.url)
    // The verifier plugin against a bare route in one downstream process: its per-request cost, in the same run.
    const downstream = await verifierScenarios(service)
    cleanups.push({ what: 'stop the downstream server', run: downstream.stop })
    log(`downstream server (verifier plugin) synced and listening (pid ${downstream.server.pid}, ${downstream.server.url})`)
    // Before the logins: scenarios that hash leave the box the least settled.
    scenarios.splice(scenarios.findIndex(s => s.id === '4'), 0, ...downstream.scenarios)
    const measured = await runRounds(scenarios, run)

    // Logouts as fast as one instance takes them, each watched for on a second instance and its feed's subscribers.
    log(`logout storm: ${STORM_SESSIONS} sessions`)
    const storm = await logoutStorm({ env, databaseUrl: db.url, first: service, sessions: STORM_SESSIONS })
    checkInterrupted()

    // The scale scenarios: small beside large, each in a database of its own, after the rest (seeding takes minutes).
    let scale: Awaited<ReturnType<typeof scalePhase>> | undefined
    if (run.users > 0) {
      log(`scale: seeding ${SMALL_USERS} and ${run.users} users`)
      scale = await scalePhase(async () => {
        const database = await benchDatabase(pg.url)
        cleanups.push({ what: `drop database ${database.name}`, run: database.drop })
        return database
      }, SMALL_USERS, run.users)
      cleanups.push({ what: 'stop the scale services', run: scale.stop })
      Object.assign(measured, await runRounds(scale.scenarios, run))
      scenarios.push(...scale.scenarios)
    }

    const facts: RunFacts = {
      started,
      run,
      postgres: { version: db.version, throwaway: pg.throwaway },
      signingKey,
      argon2,
      readiness: { readyMs, listeningMs: service.listeningMs, rssMb: readyRssMb },
      ...(scale === undefined ? {} : { scale: scale.sizes.map(s => ({ name: s.name, users: s.users, seeded: s.seeded, restarts: s.restarts })) }),
      storm
    }
    const { rows, failures } = summarizeRounds(scenarios, measured)
    const targets = checkTargets(rows, facts)
    printReport(facts, rows, targets)
    await writeReport(facts, rows, measured, targets, failures)

    if (failures.length > 0) {
      console.error(`bench: the harness failed:\n  ${failures.join('\n  ')}`)
      return 1
    }
    return 0
  } finally {
    await runCleanups(cleanups)
  }
}

// Ctrl-C or a SIGTERM: stop the load, then clean up as on any failure; a second signal kills the children at once.
// An exception outside main's flow does the same, with 60 s for the clean-up before the process exits anyway.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { interrupt(signal) })
process.on('uncaughtException', (error) => {
  console.error(`bench: ${error.stack ?? error.message}`)
  setTimeout(() => { process.exit(1) }, 60_000).unref()
  if (!interrupted()) interrupt('an uncaught exception')
})
// A reader that went away (npm run bench | head) must not kill the harness before it has cleaned up.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})

const options = readRunOptions()
// --soak is a run of its own (bench/lib/soak.ts).
;(options.soakMinutes > 0 ? import('./lib/soak.js').then(async ({ soakRun }) => await soakRun(options)) : main(options)).then(
  (code) => { process.exit(code) },
  (error: unknown) => {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  }
)
