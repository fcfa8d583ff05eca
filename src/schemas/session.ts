import { Type, type Static } from '@sinclair/typebox'
import { uuid } from './id.js'
import type { SessionRow } from '../db/schema.js'

const SESSION_EXAMPLE = {
  id: '6a1f4d2b-3c5e-4f70-8a91-b2c3d4e5f607',
  created_at: '2026-11-23T10:00:00.000Z',
  last_used_at: '2026-11-23T10:15:00.000Z',
  expires_at: '2026-12-23T10:00:00.000Z',
  user_agent: 'Mozilla/5.0',
  ip_address: '203.0.113.7',
  current: true
}

export const SessionSchema = Type.Object({
  id: uuid(),
  created_at: Type.String({ format: 'date-time' }),
  last_used_at: Type.String({ format: 'date-time', description: 'Last login or refresh' }),
  expires_at: Type.String({ format: 'date-time', description: 'Absolute end; the session also ends after SESSION_IDLE_TTL unused' }),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  ip_address: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean({ description: 'The session of the token making this request' })
}, {
  $id: 'Session',
  title: 'Session',
  additionalProperties: false,
  examples: [SESSION_EXAMPLE]
})

export const SessionIdParamsSchema = Type.Object({
  id: uuid()
})

export const SessionListSchema = Type.Array(Type.Ref(SessionSchema), {
  description: 'Active sessions, the most recently used first',
  examples: [[SESSION_EXAMPLE]]
})

export type Session = Static<typeof SessionSchema>

export function toSession (row: SessionRow, currentSessionId: string): Session {
  return {
    id: row.id,
    created_at: row.createdAt.toISOString(),
    last_used_at: row.lastUsedAt.toISOString(),
    expires_at: row.expiresAt.toISOString(),
    user_agent: row.userAgent,
    ip_address: row.ipAddress,
    current: row.id === currentSessionId
  }
}
