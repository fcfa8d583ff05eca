// `npm run db:migrate`: applies the committed migrations and exits; for deploys that migrate before starting.
import { ConfigError, loadMigrationConfig } from './config.js'
import { migratePostgres, openDatabase } from './db/client.js'
import { DataDirLockedError } from './db/data-dir-lock.js'
import { loadEnvFile } from './startup/env-file.js'

try {
  loadEnvFile()
  const config = loadMigrationConfig()
  if (config.DATABASE_URL !== undefined) {
    await migratePostgres(config.DATABASE_URL)
  } else {
    const database = await openDatabase({ dataDir: config.DATA_DIR })
    await database.migrate()
    await database.close()
  }
  console.log(`migrations applied to ${config.DATABASE_URL !== undefined ? 'PostgreSQL' : `the embedded database in ${config.DATA_DIR}`}`)
} catch (error) {
  console.error(error instanceof ConfigError || error instanceof DataDirLockedError ? error.message : error)
  process.exit(1)
}
