import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'
import { KeyError } from './services/keys.js'

let config
try {
  config = loadConfig()
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  console.error(error.message)
  process.exit(1)
}

let app
try {
  app = await buildApp(config)
} catch (error) {
  // A bad key or admin setting is a configuration error: say which setting, without a stack trace.
  if (error instanceof ConfigError) {
    console.error(error.message)
    process.exit(1)
  }
  if (!(error instanceof KeyError)) throw error
  console.error(`Invalid configuration:\n  ${error.message}`)
  process.exit(1)
}

// SIGTERM (docker stop, Kubernetes) or SIGINT: stop accepting, let in-flight requests finish, close the database;
// past SHUTDOWN_GRACE_MS the process exits anyway (code 1).
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
  else app.log.info({ signal }, 'shutting down')
  await app.close()
  app.log.info('closed')
})

try {
  await app.listen({ port: config.PORT, host: config.HOST })
} catch (error) {
  app.log.error({ err: error }, 'could not start')
  process.exit(1)
}
