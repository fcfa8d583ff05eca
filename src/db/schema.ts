import { pgCore, sql } from './orm.js'

const { boolean, index, integer, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } = pgCore

export const users = pgTable('users', {
  id: uuid('id').primaryKey().defaultRandom(),
  username: text('username').notNull(),
  email: text('email').notNull(),
  passwordHash: text('password_hash').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  disabledAt: timestamp('disabled_at', { withTimezone: true, mode: 'date' }),
  // Proven by a link sent to the address; false again whenever the address changes.
  emailVerified: boolean('email_verified').notNull().default(false)
}, (t) => [
  // Uniqueness without regard to case is decided by these indexes, never by a read-then-write.
  uniqueIndex('users_username_lower_key').on(sql`lower(${t.username})`),
  uniqueIndex('users_email_lower_key').on(sql`lower(${t.email})`),
  // Prefix search (GET /admin/users?q=) whatever the database's collation: LIKE 'abc%' uses these.
  index('users_username_pattern_idx').using('btree', sql`lower(${t.username}) text_pattern_ops`),
  index('users_email_pattern_idx').using('btree', sql`lower(${t.email}) text_pattern_ops`)
])

export type UserRow = typeof users.$inferSelect

/** A named set of scopes (RFC 6749 section 3.3 scope tokens); `user` and `admin` are built in. */
export const roles = pgTable('roles', {
  name: text('name').primaryKey(),
  description: text('description').notNull().default(''),
  scopes: text('scopes').array().notNull().default(sql`'{}'::text[]`),
  builtIn: boolean('built_in').notNull().default(false),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow()
})

export type RoleRow = typeof roles.$inferSelect

export const userRoles = pgTable('user_roles', {
  userId: uuid('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  roleName: text('role_name').notNull().references(() => roles.name, { onDelete: 'cascade' })
}, (t) => [
  primaryKey({ columns: [t.userId, t.roleName] }),
  // Who holds a role: a role's change ends its holders' sessions, and the last admin is counted by it.
  index('user_roles_role_name_idx').on(t.roleName)
])

export const sessions = pgTable('sessions', {
  id: uuid('id').primaryKey().defaultRandom(),
  userId: uuid('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  lastUsedAt: timestamp('last_used_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
  userAgent: text('user_agent'),
  ipAddress: text('ip_address'),
  endedAt: timestamp('ended_at', { withTimezone: true, mode: 'date' }),
  endReason: text('end_reason'),
  // The scopes asked for at login, space-delimited; null: whatever the user's roles grant at each refresh.
  scope: text('scope')
}, (t) => [
  index('sessions_user_id_idx').on(t.userId),
  // Instances re-read recently ended sessions by this column.
  index('sessions_ended_at_idx').on(t.endedAt)
])

export const refreshTokens = pgTable('refresh_tokens', {
  id: uuid('id').primaryKey().defaultRandom(),
  sessionId: uuid('session_id').notNull().references(() => sessions.id, { onDelete: 'cascade' }),
  // SHA-256 of the token: the token itself is never stored.
  tokenHash: text('token_hash').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  rotatedAt: timestamp('rotated_at', { withTimezone: true, mode: 'date' }),
  // Who rotated it (the winning refresh's client): a retry within the grace window is a race only from that client.
  rotatedByIp: text('rotated_by_ip'),
  rotatedByAgent: text('rotated_by_agent')
}, (t) => [
  uniqueIndex('refresh_tokens_token_hash_key').on(t.tokenHash),
  index('refresh_tokens_session_id_idx').on(t.sessionId)
])

export type SessionRow = typeof sessions.$inferSelect

/**
 * Single-use tokens sent by email (password reset, email verification): only a SHA-256 of the token is stored.
 * A token is dead once used, expired, or replaced; a reset token also dies with any change of password.
 */
export const accountTokens = pgTable('account_tokens', {
  id: uuid('id').primaryKey().defaultRandom(),
  userId: uuid('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  purpose: text('purpose', { enum: ['password_reset', 'email_verify'] }).notNull(),
  tokenHash: text('token_hash').notNull(),
  // The address the token was sent to: a verification proves that address, and no other.
  email: text('email').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull()
}, (t) => [
  uniqueIndex('account_tokens_token_hash_key').on(t.tokenHash),
  index('account_tokens_user_id_idx').on(t.userId, t.purpose)
])

export type AccountTokenRow = typeof accountTokens.$inferSelect

/**
 * Messages waiting to be sent, written in the transaction that makes what they carry (a token), sent by a
 * background sender (SELECT ... FOR UPDATE SKIP LOCKED, so that each goes once with several instances), deleted
 * once sent. A message past expires_at is dropped unsent: the link in it is dead by then.
 */
export const outbox = pgTable('outbox', {
  id: uuid('id').primaryKey().defaultRandom(),
  recipient: text('recipient').notNull(),
  subject: text('subject').notNull(),
  textBody: text('text_body').notNull(),
  htmlBody: text('html_body').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
  attempts: integer('attempts').notNull().default(0),
  nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  lastError: text('last_error')
}, (t) => [
  index('outbox_next_attempt_at_idx').on(t.nextAttemptAt)
])

export type OutboxRow = typeof outbox.$inferSelect

/**
 * Password logins let through per account, shared by every instance (services/login-throttle.ts). The key is a
 * SHA-256 of the login as typed, lowercased: never the text, which may be a password typed in the wrong field.
 * A row is forgotten (and pruned) at forget_at, WINDOW seconds after its last count or the refusal that followed it.
 */
export const loginThrottle = pgTable('login_throttle', {
  keyHash: text('key_hash').primaryKey(),
  failures: integer('failures').notNull(),
  lockedUntil: timestamp('locked_until', { withTimezone: true, mode: 'date' }),
  forgetAt: timestamp('forget_at', { withTimezone: true, mode: 'date' }).notNull()
}, (t) => [
  index('login_throttle_forget_at_idx').on(t.forgetAt)
])

/** Addresses that logged in to an account recently: failures from elsewhere do not hold them back. */
export const loginTrustedAddresses = pgTable('login_trusted_addresses', {
  keyHash: text('key_hash').notNull(),
  ip: text('ip').notNull(),
  succeededAt: timestamp('succeeded_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow()
}, (t) => [
  primaryKey({ columns: [t.keyHash, t.ip] }),
  index('login_trusted_addresses_succeeded_at_idx').on(t.succeededAt)
])

/**
 * Services that get tokens of their own (OAuth 2.0 client credentials, RFC 6749 section 4.4). The id is the
 * client_id; only a SHA-256 of the secret is stored. Deleted softly: deleted_at is what every instance re-reads to
 * refuse a deleted client's tokens until they expire, after a restart too.
 */
export const serviceClients = pgTable('service_clients', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull(),
  scopes: text('scopes').array().notNull().default(sql`'{}'::text[]`),
  secretHash: text('secret_hash').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  secretRotatedAt: timestamp('secret_rotated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  deletedAt: timestamp('deleted_at', { withTimezone: true, mode: 'date' })
}, (t) => [
  // Instances re-read recently deleted clients by this column, as they do ended sessions.
  index('service_clients_deleted_at_idx').on(t.deletedAt)
])

export type ServiceClientRow = typeof serviceClients.$inferSelect
