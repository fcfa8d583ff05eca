// A downstream service for `npm run bench` (bench/harness.ts): the same route bare and behind the verifier plugin's
// authenticate hook (packages/fastify-auth-verifier), in one process, so that the benchmark compares the two in the
// same run. The plugin is TypeScript source, loaded through tsx once at start; requests run the transpiled code.
// Settings: AUTH_URL (the service under test), CLIENT_ID and CLIENT_SECRET (a client holding sessions:ended).
// Prints one JSON line, {"port":N,"pid":N}, once the plugin has synced with the ended-session feed and it listens.
import Fastify from 'fastify'
import { register } from 'tsx/esm/api'
import { listenForHarness } from './listen.mjs'

register()
const { default: verifier } = await import('../packages/fastify-auth-verifier/src/index.ts')

const app = Fastify({ logger: { level: 'warn' } })
await app.register(verifier, {
  authUrl: process.env.AUTH_URL,
  audience: process.env.AUDIENCE ?? 'auth-service',
  clientId: process.env.CLIENT_ID,
  clientSecret: process.env.CLIENT_SECRET,
  // The service's metadata names PUBLIC_URL (unset here): every endpoint is reached at AUTH_URL.
  sameOriginEndpoints: true
})
app.get('/bare', async () => ({ ok: true }))
app.get('/verified', { onRequest: app.authenticate }, async () => ({ ok: true }))
await app.ready()
await app.authVerifier.whenSynced(30_000)
await listenForHarness(app)
