import { FormatRegistry, Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { UserRow } from '../db/schema.js'
import { uuid } from './id.js'

export const USERNAME_PATTERN = '^[A-Za-z0-9_.-]+$'

/** A scope token's rule in words (RFC 6749 section 3.3), for the schemas that take scopes. */
export const SCOPE_TOKEN_RULE = 'must be 1 to 128 printable ASCII characters other than space, " and \\'

/** The password policy in a sentence, for the document (services/password-policy.ts applies it). */
export const PASSWORD_RULES = 'At least PASSWORD_MIN_LENGTH (default 8) and at most 128 characters of any Unicode, compared exactly; ' +
  'not a common or breached password, and not containing the username or the email address\'s local part'

/** A password field: the length bounds every policy shares; the rest is checked by the policy. */
export const passwordField = (description = PASSWORD_RULES) => Type.String({ minLength: 8, maxLength: 128, description })

export const RegisterBodySchema = Type.Object({
  username: Type.String({ minLength: 3, maxLength: 32, pattern: USERNAME_PATTERN, 'x-error-message': 'must be 3 to 32 letters, digits, _, . or -', description: '3-32 letters, digits, `_`, `.` or `-`; unique without regard to case', examples: ['alice'] }),
  email: Type.String({ format: 'email', maxLength: 254, description: 'Unique without regard to case', examples: ['alice@example.com'] }),
  password: Type.String({ minLength: 8, maxLength: 128, description: PASSWORD_RULES, examples: ['correct horse battery staple'] })
}, { title: 'RegisterRequest' })

export type RegisterBody = Static<typeof RegisterBodySchema>

export const UserSchema = Type.Object({
  id: uuid(),
  username: Type.String(),
  email: Type.String({ format: 'email' }),
  email_verified: Type.Boolean({ description: 'Whether the user has opened a verification link sent to this address' }),
  created_at: Type.String({ format: 'date-time' })
}, {
  $id: 'User',
  title: 'User',
  additionalProperties: false,
  examples: [{ id: '0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41', username: 'alice', email: 'alice@example.com', email_verified: true, created_at: '2026-11-23T10:00:00.000Z' }]
})

export type User = Static<typeof UserSchema>

/** An answer to a request whose work goes on after it (an email on its way). */
export const AcceptedSchema = Type.Object({
  detail: Type.String({ description: 'What happens next, in words a person can read' })
}, { $id: 'Accepted', title: 'Accepted', additionalProperties: false, examples: [{ detail: 'A message with a link is on its way' }] })

/** What a client sees of a user: never the password hash. */
export function toUser (row: UserRow): User {
  return { id: row.id, username: row.username, email: row.email, email_verified: row.emailVerified, created_at: row.createdAt.toISOString() }
}

// What Fastify's validator (ajv-formats) takes as an email, for the checks made outside a request.
const EMAIL = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/i
if (!FormatRegistry.Has('email')) FormatRegistry.Set('email', (value) => EMAIL.test(value))

/** The registration rules, for users created outside a request (the command line): one message per broken rule. */
export function registrationProblems (input: RegisterBody): string[] {
  const problems = [...Value.Errors(RegisterBodySchema, input)].map(e => `${e.path.slice(1)}: ${e.message.toLowerCase()}`)
  if (!input.password.isWellFormed()) problems.push('password: must be well-formed Unicode')
  return problems
}
