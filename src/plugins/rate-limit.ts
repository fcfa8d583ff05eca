import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import { Redis } from 'ioredis'
import { createRedisStore, type RateLimitStore } from '../adapters/rate-limit-redis-store.js'
import { RATE_LIMIT_UNAVAILABLE } from '../errors.js'

/** Wraps the Redis store: a failed or slow Redis call becomes one error the error handlers know. */
function guarded (inner: RateLimitStore): RateLimitStore {
  return {
    incr: (key, callback, timeWindow, max) => {
      inner.incr(key, (error, result) => {
        callback(error === null ? null : Object.assign(new Error('Rate limit store unavailable'), { code: RATE_LIMIT_UNAVAILABLE, cause: error }), result)
      }, timeWindow, max)
    },
    child: (routeOptions) => guarded(inner.child(routeOptions))
  }
}

/** The store class @fastify/rate-limit instantiates: its own Redis store, reached directly so that its errors can be named. */
function storeOn (redis: Redis): never {
  return class { constructor () { return guarded(createRedisStore(redis, 'auth-service:rate-limit:')) } } as never
}

/**
 * A Redis client that never makes a request wait: no queue while disconnected, every command bounded. `whenDown`
 * says, in the warning logged at most every 10 s while Redis does not answer, what its user does meanwhile.
 */
export async function connectRedis (app: FastifyInstance, url: string, timeoutMs: number, whenDown = 'rate limits fail open, except on routes that fail closed'): Promise<Redis> {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    commandTimeout: timeoutMs,
    connectTimeout: Math.max(timeoutMs, 1000),
    maxRetriesPerRequest: 0,
    // Reconnects in the background.
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000)
  })
  let lastWarning = 0
  redis.on('error', (error: Error) => {
    if (Date.now() - lastWarning < 10_000) return
    lastWarning = Date.now()
    app.log.warn({ err: { message: error.message } }, `redis unavailable: ${whenDown}`)
  })
  app.addHook('onClose', async () => { redis.disconnect() })
  // Give a starting Redis a moment, but start without it rather than not at all.
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 2000)
    redis.once('ready', () => { clearTimeout(timer); resolve() })
  })
  return redis
}

export default fp(async (app) => {
  const { RATE_LIMIT_ENABLED, RATE_LIMIT_MAX, RATE_LIMIT_WINDOW_SECONDS, REDIS_URL, REDIS_TIMEOUT_MS } = app.config
  // Off for deployments that limit at a gateway, and for load tests; routes' own limits go with it.
  if (!RATE_LIMIT_ENABLED) return

  const redis = REDIS_URL === undefined ? undefined : await connectRedis(app, REDIS_URL, REDIS_TIMEOUT_MS)
  await app.register(rateLimit, {
    global: true,
    max: RATE_LIMIT_MAX,
    timeWindow: RATE_LIMIT_WINDOW_SECONDS * 1000,
    // Fail open by default: a Redis outage must not take every route down. The token and register endpoints,
    // where the limit is what stops password guessing and sign-up floods, fail closed (skipOnError: false there).
    skipOnError: true,
    ...(redis !== undefined ? { store: storeOn(redis) } : {}),
    // The error handlers turn this into a problem (or an OAuth error) with Retry-After.
    errorResponseBuilder: (request, context) => {
      app.metrics.rateLimited.inc({ route: request.routeOptions.url ?? 'unmatched' })
      return Object.assign(new Error('Rate limit exceeded'), { statusCode: 429, ttl: context.ttl })
    }
  })
}, { name: 'rate-limit', dependencies: ['config', 'metrics'] })
