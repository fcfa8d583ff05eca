/**
 * The security events the audit trail records, as structured log lines: `{"audit":{"event":...}}` at info level,
 * with the request id, route and client address. Never a password, token or attempted username (people type
 * passwords into the username field).
 */
export type AuditEvent =
  | 'user_registered'
  | 'login_succeeded'
  | 'login_failed'
  | 'login_throttled'
  | 'token_refreshed'
  | 'refresh_token_reuse'
  | 'logout'
  | 'token_revoked'
  | 'session_ended'
  | 'all_sessions_ended'
  | 'admin_user_created'
  | 'admin_user_updated'
  | 'admin_user_deleted'
  | 'admin_sessions_ended'
  | 'admin_role_saved'
  | 'admin_role_deleted'
  | 'password_changed'
  | 'password_change_failed'
  | 'password_reset_requested'
  | 'password_reset'
  | 'email_verification_sent'
  | 'email_verified'
  | 'account_deleted'
  | 'account_deletion_failed'
  | 'client_token_issued'
  | 'client_authentication_failed'
  | 'admin_client_created'
  | 'admin_client_secret_rotated'
  | 'admin_client_deleted'

export interface AuditFields {
  user_id?: string
  session_id?: string
  sessions_ended?: number
  reason?: string
  /** A throttled login: how long the account's logins are held back. */
  retry_after_seconds?: number
  /** Administration: the user acted on (user_id is the administrator) and what changed. */
  target_user_id?: string
  role?: string
  changes?: string[]
  /** A service client: the one that got a token or failed to authenticate, or the one an administrator acted on. */
  client_id?: string
}

/** Where an event happened: the request's logger (which adds the request id) and the client's address. */
export interface AuditContext {
  log: { info: (fields: object, message: string) => void }
  ip: string
}

export function audit (context: AuditContext, event: AuditEvent, fields: AuditFields = {}): void {
  context.log.info({ audit: { event, ...fields, ip: context.ip } }, `audit ${event}`)
}
