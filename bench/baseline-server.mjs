// The physical reference for `npm run bench`: a bare Fastify app with one route, started the same way as
// bench/server.mjs (plain node) with the same logger level. What this box serves with no auth work at all.
// Prints one JSON line, {"port":N,"pid":N}, once it listens.
import Fastify from 'fastify'
import { listenForHarness } from './listen.mjs'

const app = Fastify({ logger: { level: 'warn' } })
app.get('/', async () => ({ ok: true }))
await listenForHarness(app)
