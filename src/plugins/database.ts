import fp from 'fastify-plugin'
import { openDatabase, type DatabaseHandle } from '../db/client.js'

declare module 'fastify' {
  interface FastifyInstance {
    database: DatabaseHandle
  }
}

export interface DatabasePluginOptions {
  /** Tests: an already opened database, which the app uses but does not close. */
  database?: DatabaseHandle
}

export default fp<DatabasePluginOptions>(async (app, options) => {
  const { DATABASE_URL, DATA_DIR, DATABASE_POOL_MAX, DATABASE_PREPARED_STATEMENTS, DATABASE_TIMEOUT_MS, MIGRATE_ON_START } = app.config
  let database = options.database
  if (database === undefined) {
    const opened = await openDatabase({
      url: DATABASE_URL,
      dataDir: DATA_DIR,
      poolMax: DATABASE_POOL_MAX,
      preparedStatements: DATABASE_PREPARED_STATEMENTS,
      timeoutMs: DATABASE_TIMEOUT_MS,
      // Once when an outage starts and once when it ends; the requests refused meanwhile are counted in /metrics.
      onDown: (reason) => { app.log.warn({ reason }, 'database unavailable') },
      onUp: (downForMs) => { app.log.info({ down_for_ms: downForMs }, 'database available again') }
    })
    app.addHook('onClose', async () => { await opened.close() })
    database = opened
  }
  if (MIGRATE_ON_START) await database.migrate()
  app.log.info({ database: database.kind }, 'database ready')
  app.decorate('database', database)
}, { name: 'database', dependencies: ['config'] })
