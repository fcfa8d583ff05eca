// The physical reference for `npm run bench`: a bare Fastify app with one route, started the same way as
// bench/server.mjs (plain node) with the same logger level. What this box serves with no auth work at all.
// Prints one JSON line, {"port":N,"pid":N}, once it listens.
import Fastify from 'fastify'

const app = Fastify({ logger: { level: 'warn' } })
app.get('/', async () => ({ ok: true }))
await app.listen({ port: 0, host: '127.0.0.1' })
const { port } = app.server.address()
console.log(JSON.stringify({ port, pid: process.pid }))

let closing = false
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    if (closing) process.exit(1)
    closing = true
    app.close().then(() => process.exit(0), () => process.exit(1))
  })
}
