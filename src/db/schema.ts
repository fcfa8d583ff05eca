import { sql } from 'drizzle-orm'
import { boolean, index, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'

export const users = pgTable('users', {
  id: uuid('id').primaryKey().defaultRandom(),
  username: text('username').notNull(),
  email: text('email').notNull(),
  passwordHash: text('password_hash').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  disabledAt: timestamp('disabled_at', { withTimezone: true, mode: 'date' })
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
  rotatedAt: timestamp('rotated_at', { withTimezone: true, mode: 'date' })
}, (t) => [
  uniqueIndex('refresh_tokens_token_hash_key').on(t.tokenHash),
  index('refresh_tokens_session_id_idx').on(t.sessionId)
])

export type SessionRow = typeof sessions.$inferSelect
