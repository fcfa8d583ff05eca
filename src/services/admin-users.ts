import { and, eq, inArray, isNull, ne, sql } from '../db/orm.js'
import type { SQL } from 'drizzle-orm'
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
  /** Set as given; a changed email without it is unverified. */
  email_verified?: boolean
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

/** Cursors are the last key seen (the lowercased username or email), base64url: opaque to clients, stable under inserts. */
const encodeCursor = (key: string): string => Buffer.from(key, 'utf8').toString('base64url')
const decodeCursor = (cursor: string): string | undefined => {
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(cursor)) return undefined
  return Buffer.from(cursor, 'base64url').toString('utf8')
}

const likePrefix = (q: string): string => q.toLowerCase().replace(/[\\%_]/g, c => `\\${c}`) + '%'

export class InvalidCursor extends Error {}

type Listed = ManagedUser & { key: string }

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

  const lowerUsername = sql<string>`lower(${users.username})`

  /** Every user in byte order of the lowercased username: the pattern index, read in order, stops at the limit. */
  async function everyone (count: number, after: string | undefined): Promise<Listed[]> {
    return await db.select({ row: users, roles: rolesOf, key: lowerUsername }).from(users)
      .where(after === undefined ? undefined : sql`${lowerUsername} ~>~ ${after}`)
      .orderBy(sql`${lowerUsername} using ~<~`).limit(count)
  }

  /**
   * The users whose username or email starts with q (without regard to case), each placed by what matched: the
   * username, or the email for those found by email alone (a username has no '@', so no two keys are equal).
   * Two streams, each an ordered read of its pattern index that stops at the limit: usernames, then emails of
   * users whose username does not match, read no further than the last username the page can hold. The cost is
   * the page, not the number of matches (a prefix of one letter at a million users is as quick as three).
   */
  async function search (q: string, count: number, after: string | undefined): Promise<Listed[]> {
    const low = q.toLowerCase()
    // A byte-order range the text_pattern_ops indexes answer even in a generic plan, and LIKE for exactness.
    const high = sql`(${low} || chr(1114111))`
    const prefix = likePrefix(q)
    // Both lower bounds go to the index; it starts from the tighter one.
    const from = (column: SQL): SQL => after === undefined ? sql`${column} ~>=~ ${low}` : sql`${column} ~>=~ ${low} and ${column} ~>~ ${after}`
    const key = sql<string>`case when lower(${users.username}) like ${prefix} then lower(${users.username}) else lower(${users.email}) end`
    const candidates = sql`with by_name as (
        select id, lower(username) as k from users
        where ${from(sql`lower(username)`)} and lower(username) ~<~ ${high} and lower(username) like ${prefix}
        order by lower(username) using ~<~ limit ${count}
      ), by_email as (
        select id from users
        where ${from(sql`lower(email)`)} and lower(email) ~<~ ${high} and lower(email) like ${prefix}
          and lower(email) ~<=~ coalesce((select k from by_name order by k using ~<~ offset ${count - 1} limit 1), ${high})
          and lower(username) not like ${prefix}
        order by lower(email) using ~<~ limit ${count}
      )
      select id from by_name union all select id from by_email`
    return await db.select({ row: users, roles: rolesOf, key }).from(users)
      .where(sql`${users.id} in (${candidates})`).orderBy(sql`${key} using ~<~`).limit(count)
  }

  return {
    async list ({ limit, cursor, q }) {
      const after = cursor === undefined ? undefined : decodeCursor(cursor)
      if (cursor !== undefined && after === undefined) throw new InvalidCursor()
      const rows = q === undefined || q === '' ? await everyone(limit + 1, after) : await search(q, limit + 1, after)
      const items = rows.slice(0, limit).map(({ row, roles }) => ({ row, roles }))
      return { items, nextCursor: rows.length > limit ? encodeCursor(rows[limit - 1].key) : null }
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
        // A new address is unverified until proven, unless the administrator says otherwise.
        const verified = changes.email_verified ?? (changed.includes('email') ? false : current.row.emailVerified)
        if (verified !== current.row.emailVerified) changed.push('email_verified')
        if (removed.length > 0 || added.length > 0) changed.push('roles')
        if (changed.length === 0) return { ok: true, user: current, changed, endSessions: false }

        const [row] = await tx.update(users).set({
          ...(changed.includes('email') ? { email: changes.email } : {}),
          ...(changed.includes('disabled') ? { disabledAt: sql`now()` } : {}),
          ...(changed.includes('enabled') ? { disabledAt: null } : {}),
          ...(changed.includes('email_verified') ? { emailVerified: verified } : {}),
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
