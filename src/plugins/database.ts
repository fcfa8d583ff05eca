import fp from 'fastify-plugin'
import { openDatabase, type DatabaseHandle } from '../db/client.js'

declare module 'fastify' {
  interface FastifyInstance {
    database: DatabaseHandle
  }
}

export interface DatabasePluginOptions {
  /** Tests: keep the embedded database in memory instead of under DATA_DIR. */
  inMemory?: boolean
}

export default fp<DatabasePluginOptions>(async (app, { inMemory = false }) => {
  const { DATABASE_URL, DATA_DIR, DATABASE_POOL_MAX, MIGRATE_ON_START } = app.config
  const database = await openDatabase({ url: DATABASE_URL, dataDir: inMemory ? undefined : DATA_DIR, poolMax: DATABASE_POOL_MAX })
  app.addHook('onClose', async () => { await database.close() })
  if (MIGRATE_ON_START) await database.migrate()
  app.log.info({ database: database.kind }, 'database ready')
  app.decorate('database', database)
}, { name: 'database', dependencies: ['config'] })
