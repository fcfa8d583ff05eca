import fp from 'fastify-plugin'

/** How the server speaks HTTP: request ids echoed, JSON only unless a route says otherwise, no lingering keep-alive. */
export default fp(async (app) => {
  // Fastify parses text/plain by default; this API takes JSON (and forms at the token endpoints) only.
  app.removeContentTypeParser('text/plain')

  app.addHook('onRequest', (request, reply, done) => { reply.header('x-request-id', request.id); done() })

  // Shutting down: keep-alive connections are closed as soon as their last answer has gone, so that close() does
  // not wait on clients that would keep them open (server.close() only closes the ones idle when it is called).
  let sweeper: NodeJS.Timeout | undefined
  app.addHook('preClose', (done) => {
    sweeper = setInterval(() => { app.server.closeIdleConnections() }, 25).unref()
    done()
  })
  app.addHook('onClose', (_instance, done) => { clearInterval(sweeper); done() })
}, { name: 'http' })
