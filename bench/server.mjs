// The service under test for `npm run bench` (bench/harness.ts): the compiled service (dist/, as the image runs it)
// plus one probe route behind the real authenticate hook. Settings come from the environment (the harness passes
// DATABASE_URL and a signing key); the benchmark's own ones are forced: no rate limits, warn-level logs, loopback,
// an ephemeral port. argon2 keeps its defaults (OWASP m=19456 t=2 p=1) unless ARGON2_* are set.
// Plain JavaScript over dist/, run with plain node: no TypeScript loader in the measured process.
// Prints one JSON line, {"port":N,"pid":N}, once it listens.
import { createApp } from '../dist/app.js'
import { loadConfig } from '../dist/config.js'
import { requireAuthentication } from '../dist/plugins/auth.js'
import { listenForHarness } from './listen.mjs'

/** @param {import('fastify').FastifyInstance} app */
const probe = async (app) => {
  // The protected-route cost alone: token verification and the ended-session check, no database.
  app.get('/bench/protected', { onRequest: app.authenticate, config: { rateLimit: false } }, async (request) => ({ sub: request.user.sub }))
  // The same plus a scope check, declared as the admin routes declare theirs.
  app.register(async (scoped) => {
    requireAuthentication(scoped)
    scoped.get('/bench/scoped', { config: { rateLimit: false, scopes: ['users:read'] } }, async (request) => ({ sub: request.user.sub }))
  })
}

const config = loadConfig({ ...process.env, RATE_LIMIT_ENABLED: 'false', LOG_LEVEL: 'warn' })
const app = createApp(config)
app.register(probe)
await app.ready()
await listenForHarness(app)
