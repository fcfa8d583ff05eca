import fp from 'fastify-plugin'
import { createLoginThrottle, createPostgresThrottleStore, createRedisThrottleStore, type LoginThrottle, type ThrottleSettings } from '../services/login-throttle.js'
import { connectRedis } from './rate-limit.js'

declare module 'fastify' {
  interface FastifyInstance {
    loginThrottle: LoginThrottle
  }
}

/**
 * Per-account throttling of password checks (issue 14), across instances: counts in Redis when REDIS_URL is set
 * (a client of its own, since the rate limiter may be off), else in PostgreSQL. LOGIN_THROTTLE_MAX_FAILURES=0: off.
 */
export default fp(async (app) => {
  const { config } = app
  const settings: ThrottleSettings = {
    maxFailures: config.LOGIN_THROTTLE_MAX_FAILURES,
    windowSeconds: config.LOGIN_THROTTLE_WINDOW_SECONDS,
    maxDelaySeconds: config.LOGIN_THROTTLE_MAX_DELAY_SECONDS,
    trustedSeconds: config.LOGIN_THROTTLE_TRUSTED_SECONDS
  }
  let store
  if (settings.maxFailures > 0) {
    store = config.REDIS_URL !== undefined
      ? createRedisThrottleStore(await connectRedis(app, config.REDIS_URL, config.REDIS_TIMEOUT_MS, 'password logins and changes fail closed (503)'), settings)
      : createPostgresThrottleStore(app.database.db, settings, (error) => { app.log.warn({ err: error }, 'login throttle: pruning expired counts failed') })
  }
  const throttle = createLoginThrottle(store)
  app.decorate('loginThrottle', throttle)
  app.addHook('preClose', async () => { await throttle.close() })
}, { name: 'login-throttle', dependencies: ['config', 'database'] })
