// A downstream service that trusts auth-service: `npm run example:downstream`, configured by the environment.
//   AUTH_URL       the auth service's base URL (required)
//   CLIENT_ID      a service client holding the scope sessions:ended (POST /admin/clients; required)
//   CLIENT_SECRET  its secret (required)
//   PORT           default 3001; HOST default 127.0.0.1; AUDIENCE default auth-service (the service's JWT_AUDIENCE)
//   FAIL_OPEN      "true" to accept tokens while the ended-session feed is unreachable (default: refuse, 503)
import Fastify from 'fastify'
import verifier from '@auth-service/fastify-verifier'

function setting (name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback
  if (value === undefined || value === '') {
    console.error(`examples/downstream: ${name} is required`)
    process.exit(1)
  }
  return value
}

const port = Number(setting('PORT', '3001'))
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('examples/downstream: PORT must be a port number')
  process.exit(1)
}

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
await app.register(verifier, {
  authUrl: setting('AUTH_URL'),
  audience: setting('AUDIENCE', 'auth-service'),
  clientId: setting('CLIENT_ID'),
  clientSecret: setting('CLIENT_SECRET'),
  failOpen: process.env.FAIL_OPEN === 'true',
  // AUTH_URL is how this service reaches the auth service (http://auth:3000 in docker-compose), which its metadata,
  // built from PUBLIC_URL, may name otherwise.
  sameOriginEndpoints: true
})

app.get('/whoami', { onRequest: [app.authenticate] }, async (request) => request.user)
app.get('/health', async () => app.authVerifier.status())

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    app.close().then(() => process.exit(0), () => process.exit(1))
  })
}

await app.listen({ port, host: process.env.HOST ?? '127.0.0.1' })
