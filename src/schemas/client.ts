import { Type, type Static } from '@sinclair/typebox'
import { uuid } from './id.js'
import { SCOPE_TOKEN_RULE } from './user.js'
import type { ServiceClient } from '../services/clients.js'

const CLIENT_ID = '3f6c2a1e-7b4d-4c8e-9f0a-1b2c3d4e5f60'
const SECRET = 'c2VydmljZSBjbGllbnQgc2VjcmV0OiAzMiByYW5kb20gYnk'
const CREATED = '2026-11-23T10:00:00.000Z'

const clientSecret = Type.String({ description: 'Shown this once: only a hash of it is stored. 32 random bytes, base64url' })

export const ServiceClientSchema = Type.Object({
  client_id: uuid(),
  name: Type.String(),
  scopes: Type.Array(Type.String(), { description: 'The scopes its tokens may carry' }),
  created_at: Type.String({ format: 'date-time' }),
  secret_rotated_at: Type.String({ format: 'date-time', description: 'When its current secret was made' })
}, {
  title: 'ServiceClient',
  additionalProperties: false,
  examples: [{ client_id: CLIENT_ID, name: 'orders-service', scopes: ['sessions:ended'], created_at: CREATED, secret_rotated_at: CREATED }]
})

export const CreateClientSchema = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100, description: 'For people: which service this is' }),
  scopes: Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]{1,128}$', 'x-error-message': SCOPE_TOKEN_RULE }), {
    maxItems: 100,
    uniqueItems: true,
    description: 'Scopes some role defines, or `sessions:ended` (the ended-session feed)'
  })
}, { title: 'CreateClient', examples: [{ name: 'orders-service', scopes: ['sessions:ended'] }] })

export const CreatedClientSchema = Type.Object({
  client_id: uuid(),
  client_secret: clientSecret,
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  created_at: Type.String({ format: 'date-time' })
}, {
  title: 'CreatedClient',
  additionalProperties: false,
  examples: [{ client_id: CLIENT_ID, client_secret: SECRET, name: 'orders-service', scopes: ['sessions:ended'], created_at: CREATED }]
})

export const ClientSecretSchema = Type.Object({
  client_id: uuid(),
  client_secret: clientSecret
}, { title: 'ClientSecret', additionalProperties: false, examples: [{ client_id: CLIENT_ID, client_secret: SECRET }] })

export const ClientIdParamsSchema = Type.Object({ client_id: uuid() })

export function toServiceClient (client: ServiceClient): Static<typeof ServiceClientSchema> {
  return { client_id: client.id, name: client.name, scopes: client.scopes, created_at: client.createdAt.toISOString(), secret_rotated_at: client.secretRotatedAt.toISOString() }
}
