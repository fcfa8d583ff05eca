import { randomUUID } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import type { UserRow } from '../db/schema.js'

const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

/** The claims every access token we accept must carry, with the right types (RFC 9068 profile). */
export const AccessClaimsSchema = Type.Object({
  sub: Type.String({ pattern: UUID }),
  sid: Type.String({ pattern: UUID }),
  preferred_username: Type.String(),
  iat: Type.Integer(),
  exp: Type.Integer(),
  nbf: Type.Optional(Type.Integer()),
  iss: Type.String(),
  aud: Type.Union([Type.String(), Type.Array(Type.String())]),
  jti: Type.String({ minLength: 1 })
})

export type AccessClaims = Static<typeof AccessClaimsSchema>

export const accessClaimsCheck = TypeCompiler.Compile(AccessClaimsSchema)

export interface IssuedToken {
  accessToken: string
  expiresIn: number
}

export function accessTokenPayload (user: Pick<UserRow, 'id' | 'username'>, sessionId: string): Record<string, string> {
  return { sub: user.id, sid: sessionId, preferred_username: user.username, jti: randomUUID() }
}
