// The logout storm alone: npm run bench:logout-storm [-- --sessions N (default 2000)]
//
// As the harness does: a real PostgreSQL (DATABASE_URL or BENCH_DATABASE_URL, else a throwaway one) and a fresh
// database in it, dropped at the end; the compiled service (bench/server.mjs over dist/) as the first instance; then
// bench/lib/logout-storm.ts, which starts the second. Prints the figures as JSON and as a markdown table; progress goes
// to stderr. Figures are never asserted: the exit code is non-zero only when the run itself fails.
import { parseArgs } from 'node:util'
import { compileService, serviceEnvironment, startServer, stopServer, waitReady } from './lib/children.js'
import { runCleanups, type Cleanup } from './lib/cleanups.js'
import { openBenchDatabase } from './lib/database.js'
import { interrupt } from './lib/interruption.js'
import { logoutStorm, logoutStormTable } from './lib/logout-storm.js'
import { log } from './lib/progress.js'

function readSessions (): number {
  const usage = 'usage: npm run bench:logout-storm [-- --sessions N (default 2000, at most 100000)]'
  try {
    const { sessions } = parseArgs({ options: { sessions: { type: 'string' } } }).values
    const n = Number(sessions ?? 2000)
    if (Number.isInteger(n) && n >= 1 && n <= 100_000) return n
    console.error(`bench: --sessions must be a whole number from 1 to 100000 (got ${sessions})\n${usage}`)
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n${usage}`)
  }
  process.exit(2)
}

async function main (sessions: number): Promise<number> {
  const cleanups: Cleanup[] = []
  try {
    const { db } = await openBenchDatabase(cleanups)

    const { env } = serviceEnvironment(db.url)
    log('compiling the service (npm run build)')
    compileService()
    const first = await startServer('service', './server.mjs', env)
    cleanups.push({ what: 'stop the service', run: async () => { await stopServer(first) } })
    await waitReady(first)
    log(`service ready (pid ${first.pid}, ${first.url}); the logout storm: ${sessions} sessions`)

    const storm = await logoutStorm({ env, databaseUrl: db.url, first, sessions })
    console.log(JSON.stringify(storm, null, 2))
    console.log()
    console.log(logoutStormTable(storm))
    return 0
  } finally {
    await runCleanups(cleanups)
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { interrupt(signal) })

main(readSessions()).then(
  (code) => { process.exit(code) },
  (error: unknown) => {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  }
)
