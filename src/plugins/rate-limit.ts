import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'

export default fp(async (app) => {
  const { RATE_LIMIT_ENABLED, RATE_LIMIT_MAX, RATE_LIMIT_WINDOW_SECONDS } = app.config
  // Off for deployments that limit at a gateway, and for load tests; routes' own limits go with it.
  if (!RATE_LIMIT_ENABLED) return
  await app.register(rateLimit, {
    global: true,
    max: RATE_LIMIT_MAX,
    timeWindow: RATE_LIMIT_WINDOW_SECONDS * 1000,
    // The error handlers turn this into a problem (or an OAuth error) with Retry-After.
    errorResponseBuilder: (_request, context) => Object.assign(new Error('Rate limit exceeded'), { statusCode: 429, ttl: context.ttl })
  })
}, { name: 'rate-limit', dependencies: ['config'] })
