import { and, eq, inArray, sql } from '../db/orm.js'
import { isDatabaseUnavailable } from '../db/availability.js'
import { preparedStatement } from '../adapters/drizzle-prepared-statement.js'
import type { Database } from '../db/client.js'
import { roles, userRoles, users, type UserRow } from '../db/schema.js'
import type { PasswordHasher } from './password-hasher.js'

/** What a user's roles allow: the role names and the union of their scopes. */
export interface Grants {
  roles: string[]
  scopes: string[]
}

/** The role every registered user gets. */
export const DEFAULT_ROLE = 'user'
export const ADMIN_ROLE = 'admin'
const ADMIN_BOOTSTRAP_LOCK_KEY = 7_241_002

/** Role names: what a scope token allows, minus spaces' neighbours, so that a list of them is space-separated. */
export const ROLE_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'

export interface NewUser {
  username: string
  email: string
  password: string
}

export interface UserService {
  /** Creates the user with the default role, or answers undefined when the username or email is taken. */
  register: (input: NewUser) => Promise<UserRow | undefined>
  /** Creates the user with these roles (the default one always among them); undefined when the name or email is taken. */
  create: (input: NewUser, roleNames: string[]) => Promise<UserRow | undefined>
  /**
   * Creates the user as an administrator if nobody holds the admin role yet; instances starting together decide
   * under one advisory lock. 'taken': no admin, but the name or email belongs to someone, who is left as they are.
   */
  ensureAdmin: (input: NewUser) => Promise<'created' | 'exists' | 'taken'>
  /** The names among `roleNames` that no role has. */
  unknownRoles: (roleNames: string[]) => Promise<string[]>
  /**
   * The user whose username or email is `login` and whose password matches; else why not (for the audit trail).
   * `signal`: the client has gone, so a check still waiting for a hash thread is dropped (rejects with its reason).
   */
  authenticate: (login: string, password: string, signal?: AbortSignal) => Promise<LoginOutcome>
  findById: (id: string) => Promise<UserRow | undefined>
  grantsOf: (userId: string) => Promise<Grants>
  /** Drops a user from this instance's cache after a change made elsewhere in the service (administration). */
  forget: (id: string) => void
}

export type LoginOutcome =
  | { ok: true, user: UserRow }
  | { ok: false, reason: 'unknown_user' | 'wrong_password' | 'disabled', userId?: string }

interface RawUser {
  id: string
  username: string
  email: string
  password_hash: string
  created_at: string | Date
  updated_at: string | Date
  disabled_at: string | Date | null
  email_verified: boolean
}

const fromRaw = (row: RawUser): UserRow => ({
  id: row.id,
  username: row.username,
  email: row.email,
  passwordHash: row.password_hash,
  createdAt: new Date(row.created_at),
  updatedAt: new Date(row.updated_at),
  disabledAt: row.disabled_at === null ? null : new Date(row.disabled_at),
  emailVerified: row.email_verified
})

const PLAUSIBLE_LOGIN = /^[^\p{Cc}]{1,254}$/u

export interface UserCacheOptions {
  /** How long a user read from the database is served from memory: the bound on staleness across instances. */
  ttlMs: number
  maxEntries?: number
}

/**
 * Users by id are kept in memory for a short time, so that routes which need the user (GET /users/me) skip the
 * database round trip on most requests. This instance's own writes update the cache before they are answered;
 * other instances' changes (and changes made in SQL) show within ttlMs (USER_CACHE_TTL_MS).
 */
export function createUserService (db: Database, hasher: PasswordHasher, cacheOptions: UserCacheOptions = { ttlMs: 0 }): UserService {
  const { ttlMs, maxEntries = 10_000 } = cacheOptions
  const cache = new Map<string, { row: UserRow, until: number }>()
  // Concurrent misses for one user share one query.
  const pending = new Map<string, Promise<UserRow | undefined>>()

  function remember (row: UserRow): void {
    if (ttlMs <= 0) return
    cache.delete(row.id)
    if (cache.size >= maxEntries) cache.delete(cache.keys().next().value as string)
    cache.set(row.id, { row, until: Date.now() + ttlMs })
  }

  // Prepared once (PostgreSQL parses and plans them once per connection): a login's and a cache miss's lookups.
  const byId = db.select().from(users).where(eq(users.id, sql.placeholder('id'))).limit(1).prepare('user_by_id')
  const byUsername = db.select().from(users).where(sql`lower(${users.username}) = lower(${sql.placeholder('login')})`).limit(1).prepare('user_by_username')
  // The user and their roles in one statement: a user never exists without them. Roles come space-separated.
  const insert = preparedStatement<RawUser>(db, 'user_insert', sql`
    with inserted as (
      insert into ${users} (username, email, password_hash)
      values (${sql.placeholder('username')}, ${sql.placeholder('email')}, ${sql.placeholder('passwordHash')})
      on conflict do nothing returning *
    ), role as (
      insert into ${userRoles} (user_id, role_name)
      select inserted.id, name from inserted, unnest(string_to_array(${sql.placeholder('roles')}, ' ')) as name
    )
    select * from inserted`)
  const grants = db.select({ name: roles.name, scopes: roles.scopes }).from(userRoles)
    .innerJoin(roles, eq(roles.name, userRoles.roleName))
    .where(eq(userRoles.userId, sql.placeholder('userId'))).prepare('user_grants')
  const byEmail = db.select().from(users).where(sql`lower(${users.email}) = lower(${sql.placeholder('login')})`).limit(1).prepare('user_by_email')

  async function load (id: string): Promise<UserRow | undefined> {
    const [row] = await byId.execute({ id })
    if (row === undefined) cache.delete(id)
    else remember(row)
    return row
  }

  async function create ({ username, email, password }: NewUser, roleNames: string[]): Promise<UserRow | undefined> {
    const passwordHash = await hasher.hash(password)
    const names = [...new Set([DEFAULT_ROLE, ...roleNames])].join(' ')
    // The unique indexes decide between concurrent registrations: no read-then-write race.
    const [row] = await insert({ username, email, passwordHash, roles: names })
    return row === undefined ? undefined : fromRaw(row)
  }

  async function findByLogin (login: string): Promise<UserRow | undefined> {
    // A username cannot contain '@', so the two kinds of login never overlap.
    const [row] = await (login.includes('@') ? byEmail : byUsername).execute({ login })
    return row
  }

  return {
    register: async (input) => await create(input, [DEFAULT_ROLE]),
    create,

    async ensureAdmin ({ username, email, password }) {
      const [held] = await db.select({ userId: userRoles.userId }).from(userRoles).where(eq(userRoles.roleName, ADMIN_ROLE)).limit(1)
      if (held !== undefined) return 'exists'
      const passwordHash = await hasher.hash(password)
      return await db.transaction(async (tx) => {
        await tx.execute(sql`select pg_advisory_xact_lock(${ADMIN_BOOTSTRAP_LOCK_KEY})`)
        const [again] = await tx.select({ userId: userRoles.userId }).from(userRoles).where(eq(userRoles.roleName, ADMIN_ROLE)).limit(1)
        if (again !== undefined) return 'exists'
        const [row] = await tx.insert(users).values({ username, email, passwordHash }).onConflictDoNothing().returning({ id: users.id })
        if (row === undefined) return 'taken'
        await tx.insert(userRoles).values([{ userId: row.id, roleName: DEFAULT_ROLE }, { userId: row.id, roleName: ADMIN_ROLE }])
        return 'created'
      })
    },

    async unknownRoles (roleNames) {
      if (roleNames.length === 0) return []
      const known = await db.select({ name: roles.name }).from(roles).where(inArray(roles.name, roleNames))
      return roleNames.filter(name => !known.some(k => k.name === name))
    },

    async authenticate (login, password, signal) {
      // Inputs no user can have (control characters, broken UTF-16) are treated as an unknown user,
      // still paying for one hash so the answer takes as long as any other.
      const row = PLAUSIBLE_LOGIN.test(login) && login.isWellFormed() ? await findByLogin(login) : undefined
      const ok = await hasher.verify(row?.passwordHash, password, signal)
      if (row === undefined) return { ok: false, reason: 'unknown_user' }
      if (!ok) return { ok: false, reason: 'wrong_password', userId: row.id }
      if (row.disabledAt !== null) return { ok: false, reason: 'disabled', userId: row.id }
      if (hasher.needsRehash(row.passwordHash)) {
        const passwordHash = await hasher.hash(password)
        // Only over the hash that was verified: a password changed or reset meanwhile is never undone by this.
        const [updated] = await db.update(users).set({ passwordHash, updatedAt: new Date() })
          .where(and(eq(users.id, row.id), eq(users.passwordHash, row.passwordHash))).returning()
        if (updated !== undefined) remember(updated)
        return { ok: true, user: updated ?? { ...row, passwordHash } }
      }
      return { ok: true, user: row }
    },

    async findById (id) {
      const hit = cache.get(id)
      if (hit !== undefined && hit.until > Date.now()) return hit.row
      let loading = pending.get(id)
      if (loading === undefined) {
        loading = load(id).finally(() => { pending.delete(id) })
        pending.set(id, loading)
      }
      try {
        return await loading
      } catch (error) {
        // The database is out: what this instance last read is served rather than nothing (a miss is the 503).
        if (hit !== undefined && isDatabaseUnavailable(error)) return hit.row
        throw error
      }
    },

    forget: (id) => { cache.delete(id) },

    async grantsOf (userId) {
      const rows = await grants.execute({ userId })
      return { roles: rows.map(r => r.name).sort(), scopes: [...new Set(rows.flatMap(r => r.scopes))].sort() }
    }
  }
}
