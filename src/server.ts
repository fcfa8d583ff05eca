import './startup/compile-cache.js'
import closeWithGrace from 'close-with-grace'
import Fastify, { type FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { DataDirLockedError } from './db/data-dir-lock.js'
import { loggerOptions, prettyLogs } from './logger.js'
import { KeyError } from './services/keys.js'
import { listenError, startBootServer, type BootServer } from './startup/boot-server.js'
import { loadEnvFile } from './startup/env-file.js'
import { startUpReport } from './startup/start-up-report.js'
import { DatabaseUnreachableError, waitForDatabase } from './startup/wait-for-database.js'

/** A start that cannot succeed as configured: one plain line saying what to change, no stack trace, exit code 1. */
function fail (message: string): never {
  console.error(message)
  process.exit(1)
}

let config: Config
let envFile: string | undefined
try {
  envFile = loadEnvFile()
  config = loadConfig()
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  fail(error.message)
}

// The app's logger exists once it is built: until then, one made as the app makes its own (by Fastify, from the same options).
const logger = loggerOptions(config, { pretty: prettyLogs(config) })
const startLog = Fastify({ logger }).log
if (envFile !== undefined) startLog.info({ env_file: envFile }, 'settings read from .env (the environment\'s own variables win)')

// The port first: a second start on a busy port stops here, before it opens the database another process may be using.
let boot: BootServer
try {
  boot = await startBootServer(config.HOST, config.PORT)
} catch (error) {
  fail(listenError(error, config.HOST, config.PORT)?.message ?? `Could not listen on ${config.HOST}:${config.PORT}: ${(error as Error).message}`)
}
startLog.info({ port: boot.port }, 'starting: liveness answers 200 and readiness 503 until the service listens')

// SIGTERM or SIGINT before the service listens: nothing is open while the database is awaited, so stop at once; while it
// is being opened (and migrated), let that finish and close it properly, within SHUTDOWN_GRACE_MS.
let opening = false
let stopRequested = false
function stopDuringStart (signal: NodeJS.Signals): void {
  startLog.info({ signal }, 'shutting down before the service listens')
  if (!opening || stopRequested) {
    boot.close().finally(() => process.exit(stopRequested ? 1 : 0)).catch(() => {})
    return
  }
  stopRequested = true
  setTimeout(() => { process.exit(1) }, config.SHUTDOWN_GRACE_MS).unref()
}
process.on('SIGTERM', stopDuringStart)
process.on('SIGINT', stopDuringStart)

/** What to say when the start fails: the setting to change for the failures a configuration causes. */
function startFailure (error: unknown): string {
  if (error instanceof ConfigError || error instanceof DataDirLockedError || error instanceof DatabaseUnreachableError) return error.message
  // A bad key or admin setting is a configuration error too.
  if (error instanceof KeyError) return `Invalid configuration:\n  ${error.message}`
  // The metrics server listens while the app loads.
  const metricsPort = (error as { port?: unknown } | undefined)?.port === config.METRICS_PORT ? listenError(error, config.HOST, config.METRICS_PORT, 'METRICS_PORT') : undefined
  if (metricsPort !== undefined) return metricsPort.message
  startLog.fatal({ err: error }, 'could not start')
  return `Could not start: ${(error as Error).message}`
}

let app: FastifyInstance
try {
  if (config.DATABASE_URL !== undefined) {
    await waitForDatabase(config.DATABASE_URL, { timeoutSeconds: config.DATABASE_START_TIMEOUT_SECONDS, log: startLog })
  }
  opening = true
  app = await buildApp(config, { logger })
} catch (error) {
  await boot.close()
  fail(startFailure(error))
}
process.off('SIGTERM', stopDuringStart)
process.off('SIGINT', stopDuringStart)
if (stopRequested) {
  await app.close()
  await boot.close()
  app.log.info('closed')
  process.exit(0)
}

// SIGTERM (docker stop, Kubernetes) or SIGINT: stop accepting, let in-flight requests finish, close the database;
// past SHUTDOWN_GRACE_MS the process exits anyway (code 1).
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
  else app.log.info({ signal }, 'shutting down')
  await app.close()
  app.log.info('closed')
})

// The hand-over: the start-up server lets go of the port and the service takes it in the same breath. A connection in
// that gap (well under a millisecond) is refused, as during any restart; another process taking the port in it makes
// the listen below fail, and that is said like a busy port at start.
await boot.close()
try {
  await app.listen({ port: boot.port, host: config.HOST })
} catch (error) {
  const message = listenError(error, config.HOST, boot.port)?.message
  if (message === undefined) app.log.error({ err: error }, 'could not start')
  await app.close().catch(() => {})
  fail(message ?? `Could not start: ${(error as Error).message}`)
}
const report = startUpReport(config, app.keyRing, boot.port)
app.log.info({ node_env: config.NODE_ENV, ...report.fields }, report.message)
