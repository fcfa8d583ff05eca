// Shared by the benchmark's servers: listen on loopback, print the one JSON line the harness waits for
// ({"port":N,"pid":N}), and close cleanly on SIGTERM or SIGINT (a second signal exits at once).
/** @param {import('fastify').FastifyInstance} app */
export async function listenForHarness (app) {
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
}
