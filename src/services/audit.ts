import type { FastifyRequest } from 'fastify'

/**
 * The security events the audit trail records, as structured log lines: `{"audit":{"event":...}}` at info level,
 * with the request id, route and client address. Never a password, token or attempted username (people type
 * passwords into the username field).
 */
export type AuditEvent =
  | 'user_registered'
  | 'login_succeeded'
  | 'login_failed'
  | 'token_refreshed'
  | 'refresh_token_reuse'
  | 'logout'
  | 'token_revoked'
  | 'session_ended'
  | 'all_sessions_ended'

export interface AuditFields {
  user_id?: string
  session_id?: string
  sessions_ended?: number
  reason?: string
}

export function audit (request: FastifyRequest, event: AuditEvent, fields: AuditFields = {}): void {
  request.log.info({ audit: { event, ...fields, ip: request.ip } }, `audit ${event}`)
}
