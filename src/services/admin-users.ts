import { and, asc, eq, gt, inArray, isNull, ne, or, sql, type SQL } from 'drizzle-orm'
import type { Database } from '../db/client.js'
import { roles, sessions, userRoles, users, type UserRow } from '../db/schema.js'
import { ADMIN_ROLE, DEFAULT_ROLE } from './users.js'

/** A user as administrators see them: the row, whether disabled, and the role names. */
export interface ManagedUser {
  row: UserRow
  roles: string[]
}

export interface UserPage {
  items: ManagedUser[]
  /** Where the next page starts (opaque), or null on the last page. */
  nextCursor: string | null
}

export interface UserChanges {
  email?: string
  roles?: string[]
  disabled?: boolean
}

export type ChangeOutcome =
  | { ok: true, user: ManagedUser, changed: string[], endSessions: boolean }
  | { ok: false, reason: 'not_found' | 'last_admin' | 'email_taken' }
  | { ok: false, reason: 'unknown_roles', roles: string[] }

export interface AdminUserService {
  list: (options: { limit: number, cursor?: string, q?: string }) => Promise<UserPage>
  get: (id: string) => Promise<ManagedUser | undefined>
  /** Applies the changes in one transaction; says whether the user's sessions must end (disabled, or a role taken). */
  update: (id: string, changes: UserChanges) => Promise<ChangeOutcome>
  /** Deletes the user; answers the sessions that ended with them, for the caller to announce. */
  remove: (id: string) => Promise<{ ok: true, ended: Array<{ id: string, endedAt: Date }> } | { ok: false, reason: 'not_found' | 'last_admin' }>
}

// The same key as the admin bootstrap: every change to who administers is decided one at a time.
const ADMINS_LOCK_KEY = 7_241_002

/** Cursors are the last username seen (lowercased), base64url: opaque to clients, stable under inserts. */
const encodeCursor = (username: string): string => Buffer.from(username.toLowerCase(), 'utf8').toString('base64url')
const decodeCursor = (cursor: string): string | undefined => {
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(cursor)) return undefined
  return Buffer.from(cursor, 'base64url').toString('utf8')
}

const likePrefix = (q: string): string => q.toLowerCase().replace(/[\\%_]/g, c => `\\${c}`) + '%'

export class InvalidCursor extends Error {}

export function createAdminUserService (db: Database): AdminUserService {
  const rolesOf = sql<string[]>`array(select ${userRoles.roleName} from ${userRoles} where ${userRoles.userId} = ${users.id} order by 1)`

  async function get (id: string): Promise<ManagedUser | undefined> {
    const [found] = await db.select({ row: users, roles: rolesOf }).from(users).where(eq(users.id, id)).limit(1)
    return found
  }

  /** Whether some other enabled user holds the admin role (asked under the lock). */
  async function anotherAdmin (tx: Database, id: string): Promise<boolean> {
    const [other] = await tx.select({ id: users.id }).from(userRoles).innerJoin(users, eq(users.id, userRoles.userId))
      .where(and(eq(userRoles.roleName, ADMIN_ROLE), ne(users.id, id), isNull(users.disabledAt))).limit(1)
    return other !== undefined
  }

  return {
    async list ({ limit, cursor, q }) {
      const conditions: SQL[] = []
      if (cursor !== undefined) {
        const after = decodeCursor(cursor)
        if (after === undefined) throw new InvalidCursor()
        conditions.push(gt(sql`lower(${users.username})`, after))
      }
      if (q !== undefined && q !== '') {
        // A byte-order range the text_pattern_ops indexes answer even in a generic plan, and LIKE for exactness.
        const lowered = q.toLowerCase()
        const prefix = likePrefix(q)
        const startsWith = (column: SQL): SQL =>
          sql`(${column} ~>=~ ${lowered} and ${column} ~<~ (${lowered} || chr(1114111)) and ${column} like ${prefix})`
        conditions.push(or(startsWith(sql`lower(${users.username})`), startsWith(sql`lower(${users.email})`)) as SQL)
      }
      const rows = await db.select({ row: users, roles: rolesOf }).from(users).where(and(...conditions))
        .orderBy(asc(sql`lower(${users.username})`)).limit(limit + 1)
      const items = rows.slice(0, limit)
      return { items, nextCursor: rows.length > limit ? encodeCursor(items[items.length - 1].row.username) : null }
    },

    get,

    async update (id, changes) {
      const wanted = changes.roles === undefined ? undefined : [...new Set([DEFAULT_ROLE, ...changes.roles])].sort()
      if (wanted !== undefined) {
        const known = await db.select({ name: roles.name }).from(roles).where(inArray(roles.name, wanted))
        const unknown = wanted.filter(name => !known.some(k => k.name === name))
        if (unknown.length > 0) return { ok: false, reason: 'unknown_roles', roles: unknown }
      }
      return await db.transaction(async (tx): Promise<ChangeOutcome> => {
        await tx.execute(sql`select pg_advisory_xact_lock(${ADMINS_LOCK_KEY})`)
        const current = await (async () => {
          const [found] = await tx.select({ row: users, roles: rolesOf }).from(users).where(eq(users.id, id)).limit(1).for('update')
          return found
        })()
        if (current === undefined) return { ok: false, reason: 'not_found' }
        const changed: string[] = []
        const removed = wanted === undefined ? [] : current.roles.filter(r => !wanted.includes(r))
        const added = wanted === undefined ? [] : wanted.filter(r => !current.roles.includes(r))
        const disabling = changes.disabled === true && current.row.disabledAt === null
        const losesAdmin = current.roles.includes(ADMIN_ROLE) && current.row.disabledAt === null && (removed.includes(ADMIN_ROLE) || disabling)
        if (losesAdmin && !(await anotherAdmin(tx as unknown as Database, id))) return { ok: false, reason: 'last_admin' }

        if (changes.email !== undefined && changes.email.toLowerCase() !== current.row.email.toLowerCase()) {
          const [taken] = await tx.select({ id: users.id }).from(users).where(and(sql`lower(${users.email}) = lower(${changes.email})`, ne(users.id, id))).limit(1)
          if (taken !== undefined) return { ok: false, reason: 'email_taken' }
          changed.push('email')
        }
        if (changes.disabled !== undefined && changes.disabled !== (current.row.disabledAt !== null)) changed.push(changes.disabled ? 'disabled' : 'enabled')
        if (removed.length > 0 || added.length > 0) changed.push('roles')
        if (changed.length === 0) return { ok: true, user: current, changed, endSessions: false }

        const [row] = await tx.update(users).set({
          ...(changed.includes('email') ? { email: changes.email } : {}),
          ...(changed.includes('disabled') ? { disabledAt: sql`now()` } : {}),
          ...(changed.includes('enabled') ? { disabledAt: null } : {}),
          updatedAt: sql`now()`
        }).where(eq(users.id, id)).returning()
        if (removed.length > 0) await tx.delete(userRoles).where(and(eq(userRoles.userId, id), inArray(userRoles.roleName, removed)))
        if (added.length > 0) await tx.insert(userRoles).values(added.map(roleName => ({ userId: id, roleName })))
        return { ok: true, user: { row, roles: wanted ?? current.roles }, changed, endSessions: disabling || removed.length > 0 }
      }).catch((error: unknown): ChangeOutcome => {
        // Two concurrent changes to one address: the unique index decides.
        if ((error as { cause?: { code?: string } }).cause?.code === '23505') return { ok: false, reason: 'email_taken' }
        throw error
      })
    },

    async remove (id) {
      return await db.transaction(async (tx) => {
        await tx.execute(sql`select pg_advisory_xact_lock(${ADMINS_LOCK_KEY})`)
        const [current] = await tx.select({ row: users, roles: rolesOf }).from(users).where(eq(users.id, id)).limit(1).for('update')
        if (current === undefined) return { ok: false, reason: 'not_found' } as const
        const isActiveAdmin = current.roles.includes(ADMIN_ROLE) && current.row.disabledAt === null
        if (isActiveAdmin && !(await anotherAdmin(tx as unknown as Database, id))) return { ok: false, reason: 'last_admin' } as const
        // Marked ended before the rows go with the user, so that the caller can announce them to every instance.
        const ended = await tx.update(sessions).set({ endedAt: sql`now()`, endReason: 'user_deleted' })
          .where(and(eq(sessions.userId, id), isNull(sessions.endedAt))).returning({ id: sessions.id, endedAt: sessions.endedAt })
        await tx.delete(users).where(eq(users.id, id))
        return { ok: true, ended: ended.map(r => ({ id: r.id, endedAt: r.endedAt ?? new Date() })) } as const
      })
    }
  }
}
