import { Type } from '@sinclair/typebox'

export const SessionSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  created_at: Type.String({ format: 'date-time' }),
  last_used_at: Type.String({ format: 'date-time', description: 'Last login or refresh' }),
  expires_at: Type.String({ format: 'date-time', description: 'Absolute end; the session also ends after SESSION_IDLE_TTL unused' }),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  ip_address: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean({ description: 'The session of the token making this request' })
}, { $id: 'Session', title: 'Session', additionalProperties: false })

export const SessionIdParamsSchema = Type.Object({
  id: Type.String({ format: 'uuid' })
})
