// The service plus two probe routes, for bench/session-check.ts: one with the full authenticate hook
// (token + ended-session check), one with the token check alone. Prints one JSON line when ready.
import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsync } from 'fastify'
import { createApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { openDatabase } from '../src/db/client.js'

const ENDED = Number(process.env.BENCH_ENDED_SESSIONS ?? 10000)

const probes: FastifyPluginAsync = async (app) => {
  app.get('/bench/with-session-check', { onRequest: app.authenticate, config: { rateLimit: false } }, async (request) => ({ sub: request.user.sub }))
  app.get('/bench/token-only', {
    onRequest: async (request) => { request.user = app.tokens.verify(request.headers.authorization) },
    config: { rateLimit: false }
  }, async (request) => ({ sub: request.user.sub }))
}

const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn', RATE_LIMIT_ENABLED: 'false', HOST: '127.0.0.1' })
const database = config.DATABASE_URL === undefined ? await openDatabase({}) : undefined
if (database !== undefined) await database.migrate()
const app = createApp(config, { database })
app.register(probes)
await app.ready()
// A realistic worst case: many sessions ended within the last access-token lifetime.
for (let i = 0; i < ENDED; i++) app.endedSessions.add(randomUUID())

const username = `bench_${process.pid}`
await app.inject({ method: 'POST', url: '/auth/register', payload: { username, email: `${username}@example.com`, password: 'bench password 1' } })
const login = await app.inject({ method: 'POST', url: '/auth/token', payload: { username, password: 'bench password 1' } })
await app.listen({ port: 0, host: '127.0.0.1' })
const port = (app.server.address() as { port: number }).port
console.log(JSON.stringify({ port, token: login.json().access_token, ended: app.endedSessions.size }))
process.on('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
