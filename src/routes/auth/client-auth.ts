import type { FastifyInstance, FastifyRequest } from 'fastify'
import { OAuthErrors } from '../../errors.js'
import { audit } from '../../services/audit.js'
import type { ServiceClient } from '../../services/clients.js'

type Fields = Record<string, string | undefined>

const BASIC = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

// RFC 6749 section 2.3.1: the id and secret are form-urlencoded before they are joined for HTTP Basic.
function formDecoded (value: string): string {
  try {
    return decodeURIComponent(value.replaceAll('+', ' '))
  } catch {
    return value
  }
}

/** The client's id and secret from HTTP Basic or the form fields (client_secret_post); undefined when neither is sent. */
function presentedCredentials (authorization: string | undefined, body: Fields): { id: string, secret: string } | undefined {
  const basic = authorization === undefined ? null : BASIC.exec(authorization)
  if (basic !== null) {
    // RFC 6749 section 2.3: a client uses one method per request.
    if (body.client_secret !== undefined) throw OAuthErrors.invalidRequest('Send client credentials once: HTTP Basic or client_secret, not both')
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) return { id: '', secret: '' }
    return { id: formDecoded(decoded.slice(0, colon)), secret: formDecoded(decoded.slice(colon + 1)) }
  }
  if (body.client_id !== undefined && body.client_secret !== undefined) return { id: body.client_id, secret: body.client_secret }
  return undefined
}

/**
 * The registered client that sent this request (HTTP Basic or client_secret_post), or a 401 invalid_client: the same
 * answer for no credentials, an unknown or deleted client and a wrong secret (RFC 6749 section 5.2).
 */
export async function authenticateClient (app: FastifyInstance, request: FastifyRequest, body: Fields): Promise<ServiceClient> {
  const credentials = presentedCredentials(request.headers.authorization, body)
  const client = credentials === undefined ? undefined : await app.clients.authenticate(credentials.id, credentials.secret)
  if (client === undefined) {
    // The id only when it looks like one: it is text a caller chose, and never a secret typed in the wrong field.
    const id = credentials !== undefined && UUID.test(credentials.id) ? credentials.id : undefined
    audit(request, 'client_authentication_failed', { ...(id !== undefined ? { client_id: id } : {}), reason: credentials === undefined ? 'no_credentials' : 'invalid_credentials' })
    throw OAuthErrors.invalidClient()
  }
  return client
}
