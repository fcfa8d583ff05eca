// PostgreSQL for the run: the one named by BENCH_DATABASE_URL or DATABASE_URL (its user needs CREATEDB), or else a
// throwaway server started with .ci/start-postgres.sh; and in it a fresh database for the service, dropped at the end.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import postgres from 'postgres'
import type { Cleanup } from './cleanups.js'
import { checkInterrupted } from './interruption.js'
import { log } from './progress.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const execFileAsync = promisify(execFile)

export interface PostgresServer { url: string, throwaway: boolean, stop: () => Promise<void> }
export interface BenchDatabase { url: string, name: string, version: string, drop: () => Promise<void> }

// The newest pg_ctl, as .ci/run finds it; as root, run as postgres (it refuses root).
const PG_STOP = `BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -1)")"
[ -x "$BIN/pg_ctl" ] || BIN="$(dirname "$(command -v pg_ctl)")"
if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$BIN/pg_ctl -D $PG_DIR/data -m fast stop"; else "$BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop; fi`

/** The given server (stop does nothing), or a throwaway one that stop shuts down and removes. */
export async function postgresServer (): Promise<PostgresServer> {
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
export async function benchDatabase (serverUrl: string): Promise<BenchDatabase> {
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

/** The run's PostgreSQL and a fresh database in it, each with its clean-up pushed onto `cleanups`. */
export async function openBenchDatabase (cleanups: Cleanup[]): Promise<{ pg: PostgresServer, db: BenchDatabase }> {
  const pg = await postgresServer()
  cleanups.push({ what: 'stop PostgreSQL', run: pg.stop })
  checkInterrupted()
  const db = await benchDatabase(pg.url)
  cleanups.push({ what: `drop database ${db.name}`, run: db.drop })
  log(`database ${db.name} on PostgreSQL ${db.version}${pg.throwaway ? ' (throwaway)' : ''}`)
  return { pg, db }
}
