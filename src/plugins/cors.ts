import fp from 'fastify-plugin'
import cors, { type FastifyCorsOptions } from '@fastify/cors'
import { corsOrigins } from '../config.js'

// What a browser app needs: the methods the routes use, the headers it sends, and the answer headers it must read.
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']
const ALLOWED_HEADERS = ['authorization', 'content-type', 'x-request-id']
const EXPOSED_HEADERS = ['retry-after', 'www-authenticate', 'x-request-id', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']

/**
 * CORS for the origins in CORS_ORIGINS; with none, nothing is registered and no answer carries a CORS header.
 * Tokens travel in the Authorization header, never in cookies, so credentials are never allowed (and `*` is safe).
 */
export default fp(async (app) => {
  const origins = corsOrigins(app.config)
  if (origins.length === 0) return

  const anyOrigin = origins.includes('*')
  const allowed = new Set(origins)
  const granted: FastifyCorsOptions = {
    // Reflected, not `*`, when origins are listed: the answer names the one origin that may read it (Vary: Origin).
    origin: anyOrigin ? '*' : true,
    credentials: false,
    methods: METHODS,
    allowedHeaders: ALLOWED_HEADERS,
    exposedHeaders: EXPOSED_HEADERS,
    maxAge: 600
  }
  // An OPTIONS request without Access-Control-Request-Method is no preflight: it reaches the 404 handler, readable.
  const notPreflight: FastifyCorsOptions = { ...granted, preflight: false }
  // Another origin gets no CORS header at all (the browser keeps the answer from the page); the request itself is served.
  const refused: FastifyCorsOptions = { origin: false }

  await app.register(cors, {
    // Answered in onRequest, before the rate limiter's hooks: a throttled page still learns the policy, then reads the
    // 429 and its Retry-After on the real request instead of a bare network error.
    delegator: (request, callback) => {
      const origin = request.headers.origin
      if (origin === undefined || !(anyOrigin || allowed.has(origin))) { callback(null, refused); return }
      callback(null, request.method === 'OPTIONS' && request.headers['access-control-request-method'] === undefined ? notPreflight : granted)
    }
  })
}, { name: 'cors', dependencies: ['config'] })
