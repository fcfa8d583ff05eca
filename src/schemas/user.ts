import { FormatRegistry, Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { UserRow } from '../db/schema.js'

export const USERNAME_PATTERN = '^[A-Za-z0-9_.-]+$'

export const RegisterBodySchema = Type.Object({
  username: Type.String({ minLength: 3, maxLength: 32, pattern: USERNAME_PATTERN, description: '3-32 letters, digits, `_`, `.` or `-`; unique without regard to case', examples: ['alice'] }),
  email: Type.String({ format: 'email', maxLength: 254, description: 'Unique without regard to case', examples: ['alice@example.com'] }),
  password: Type.String({ minLength: 8, maxLength: 128, description: '8-128 characters, any Unicode; compared exactly', examples: ['correct horse battery staple'] })
}, { title: 'RegisterRequest' })

export type RegisterBody = Static<typeof RegisterBodySchema>

export const UserSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  username: Type.String(),
  email: Type.String({ format: 'email' }),
  created_at: Type.String({ format: 'date-time' })
}, {
  $id: 'User',
  title: 'User',
  additionalProperties: false,
  examples: [{ id: '0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41', username: 'alice', email: 'alice@example.com', created_at: '2026-11-23T10:00:00.000Z' }]
})

export type User = Static<typeof UserSchema>

/** What a client sees of a user: never the password hash. */
export function toUser (row: UserRow): User {
  return { id: row.id, username: row.username, email: row.email, created_at: row.createdAt.toISOString() }
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
