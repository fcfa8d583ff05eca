import fp from 'fastify-plugin'
import { errorCodes, type FastifyRequest } from 'fastify'

// A route that declares no body (logout, the DELETE routes) takes an empty one whatever its content type: many HTTP
// clients send `content-type: application/json` and nothing, or a form type and nothing, on every POST. A JSON body
// there (`{}`) is parsed and ignored; anything else that is not empty is refused as it always was (415, or 400 for
// JSON that does not parse). Routes that declare a body keep their rules: JSON (forms at the token endpoints), not empty.
const takesNoBody = (request: FastifyRequest): boolean => request.routeOptions.schema?.body === undefined

// Known without reading: no length and no chunks, or a length of 0.
const announcesNoBody = (request: FastifyRequest): boolean => {
  const length = request.headers['content-length']
  return length === '0' || (length === undefined && request.headers['transfer-encoding'] === undefined)
}

/** How request bodies are read: JSON, and nothing of any media type where a route takes no body. */
export default fp(async (app) => {
  const { onProtoPoisoning, onConstructorPoisoning } = app.initialConfig
  const json = app.getDefaultJsonParser(onProtoPoisoning ?? 'error', onConstructorPoisoning ?? 'error')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body.length === 0 && takesNoBody(request)) done(null, undefined)
    else json(request, body as string, done)
  })
  // Any other media type (text/plain, a form, multipart outside the token endpoint): only when there is nothing to read.
  app.addContentTypeParser('*', (request, _payload, done) => {
    done(takesNoBody(request) && announcesNoBody(request) ? null : new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(), undefined)
  })
}, { name: 'request-bodies', dependencies: ['http'] })
