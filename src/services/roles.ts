import { asc, eq, sql } from '../db/orm.js'
import type { Database } from '../db/client.js'
import { roles, type RoleRow } from '../db/schema.js'
import { ADMIN_SCOPES } from './scopes.js'
import { ADMIN_ROLE } from './users.js'

export interface RoleDefinition {
  description: string
  scopes: string[]
}

export type PutRoleOutcome =
  | { ok: true, role: RoleRow, created: boolean, lostScopes: string[] }
  | { ok: false, reason: 'admin_scopes' }

export interface RoleService {
  list: () => Promise<RoleRow[]>
  /** Creates the role or replaces its description and scopes; says which scopes its holders lost. */
  put: (name: string, definition: RoleDefinition) => Promise<PutRoleOutcome>
  remove: (name: string) => Promise<{ ok: true } | { ok: false, reason: 'not_found' | 'built_in' }>
}

export function createRoleService (db: Database): RoleService {
  return {
    list: async () => await db.select().from(roles).orderBy(asc(roles.name)),

    async put (name, { description, scopes }) {
      const wanted = [...new Set(scopes)].sort()
      // The admin role keeps the service's own scopes: without them nobody could administer it any more.
      if (name === ADMIN_ROLE && !ADMIN_SCOPES.every(s => wanted.includes(s))) return { ok: false, reason: 'admin_scopes' }
      return await db.transaction(async (tx) => {
        const [before] = await tx.select().from(roles).where(eq(roles.name, name)).limit(1).for('update')
        const [role] = before === undefined
          ? await tx.insert(roles).values({ name, description, scopes: wanted }).returning()
          : await tx.update(roles).set({ description, scopes: wanted, updatedAt: sql`now()` }).where(eq(roles.name, name)).returning()
        return { ok: true, role, created: before === undefined, lostScopes: (before?.scopes ?? []).filter(s => !wanted.includes(s)) }
      })
    },

    async remove (name) {
      const [role] = await db.select({ builtIn: roles.builtIn }).from(roles).where(eq(roles.name, name)).limit(1)
      if (role === undefined) return { ok: false, reason: 'not_found' }
      if (role.builtIn) return { ok: false, reason: 'built_in' }
      await db.delete(roles).where(eq(roles.name, name))
      return { ok: true }
    }
  }
}
