import { Type, type Static } from '@sinclair/typebox'
import { uuid } from './id.js'
import type { RoleRow } from '../db/schema.js'
import type { ManagedUser } from '../services/admin-users.js'
import { ROLE_NAME_PATTERN } from '../services/users.js'
import { RegisterBodySchema, SCOPE_TOKEN_RULE } from './user.js'

const ROLE_NAME_RULE = 'must be 1 to 64 letters, digits, _, ., : or -, starting with a letter or a digit'

const ADMIN_USER_EXAMPLE = {
  id: '0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41',
  username: 'alice',
  email: 'alice@example.com',
  email_verified: true,
  created_at: '2026-11-23T10:00:00.000Z',
  disabled: false,
  roles: ['admin', 'user']
}

const RoleNamesSchema = Type.Array(Type.String({ pattern: ROLE_NAME_PATTERN, maxLength: 64, 'x-error-message': ROLE_NAME_RULE }), {
  maxItems: 50,
  uniqueItems: true,
  description: 'Role names; `user` is always kept'
})

export const AdminUserSchema = Type.Object({
  id: uuid(),
  username: Type.String(),
  email: Type.String({ format: 'email' }),
  email_verified: Type.Boolean({ description: 'Proven by a link sent to the address; false again when the address changes' }),
  created_at: Type.String({ format: 'date-time' }),
  disabled: Type.Boolean({ description: 'A disabled user cannot log in; their sessions ended when they were disabled' }),
  roles: Type.Array(Type.String())
}, { $id: 'AdminUser', title: 'AdminUser', additionalProperties: false, examples: [ADMIN_USER_EXAMPLE] })

export const AdminUserPageSchema = Type.Object({
  items: Type.Array(Type.Ref(AdminUserSchema)),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last' })
}, { title: 'AdminUserPage', additionalProperties: false, examples: [{ items: [ADMIN_USER_EXAMPLE], next_cursor: null }] })

export const AdminUserListQuerySchema = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
  cursor: Type.Optional(Type.String({ maxLength: 400, description: 'From `next_cursor` of the previous page' })),
  q: Type.Optional(Type.String({ maxLength: 254, description: 'The start of the username or email, without regard to case' }))
})

export const UserIdParamsSchema = Type.Object({ id: uuid() })

export const AdminCreateUserSchema = Type.Object({
  ...RegisterBodySchema.properties,
  roles: Type.Optional(RoleNamesSchema)
}, { title: 'AdminCreateUser' })

export const AdminUpdateUserSchema = Type.Object({
  email: Type.Optional(RegisterBodySchema.properties.email),
  roles: Type.Optional(RoleNamesSchema),
  disabled: Type.Optional(Type.Boolean({ description: 'true ends the user\'s sessions and refuses their logins' })),
  email_verified: Type.Optional(Type.Boolean({ description: 'Marks the address as verified (or not) without a link' }))
}, { title: 'AdminUpdateUser', minProperties: 1, description: 'Taking a role away or disabling the user ends their sessions. A new email is unverified (a link is sent to it) unless `email_verified` says otherwise' })

export const RoleSchema = Type.Object({
  name: Type.String(),
  description: Type.String(),
  scopes: Type.Array(Type.String(), { description: 'RFC 6749 scope tokens that the role grants' }),
  built_in: Type.Boolean({ description: '`user` and `admin`: cannot be deleted; `admin` keeps the service\'s own scopes' })
}, {
  $id: 'Role',
  title: 'Role',
  additionalProperties: false,
  examples: [{ name: 'orders-clerk', description: 'Handles orders', scopes: ['orders:read', 'orders:write'], built_in: false }]
})

export const RoleNameParamsSchema = Type.Object({ name: Type.String({ pattern: ROLE_NAME_PATTERN, maxLength: 64, 'x-error-message': ROLE_NAME_RULE }) })

export const RoleDefinitionSchema = Type.Object({
  description: Type.String({ maxLength: 200 }),
  scopes: Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]{1,128}$', 'x-error-message': SCOPE_TOKEN_RULE }), {
    maxItems: 100,
    uniqueItems: true,
    description: 'Scope tokens (RFC 6749 section 3.3), for example `orders:write`'
  })
}, { title: 'RoleDefinition' })

export type AdminUser = Static<typeof AdminUserSchema>

export function toAdminUser ({ row, roles }: ManagedUser): AdminUser {
  return { id: row.id, username: row.username, email: row.email, email_verified: row.emailVerified, created_at: row.createdAt.toISOString(), disabled: row.disabledAt !== null, roles }
}

export function toRole (row: RoleRow): Static<typeof RoleSchema> {
  return { name: row.name, description: row.description, scopes: row.scopes, built_in: row.builtIn }
}
