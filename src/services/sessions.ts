import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { and, desc, eq, gt, inArray, isNull, ne, sql } from '../db/orm.js'
import { preparedStatement } from '../adapters/drizzle-prepared-statement.js'
import type { Database } from '../db/client.js'
import { refreshTokens, sessions, userRoles, users, type SessionRow, type UserRow } from '../db/schema.js'

export interface SessionPolicy {
  absoluteTtlSeconds: number
  idleTtlSeconds: number
  reuseGraceSeconds: number
}

export interface ClientMeta {
  userAgent?: string
  ipAddress?: string
}

/** The scopes a login asked for (space-delimited), or null for whatever the user's roles grant at each refresh. */
export type SessionScope = string | null

/** Whose sessions end: one session, a user's, or those of every holder of a role (at least one of them). */
export interface EndTarget {
  userId?: string
  sessionId?: string
  roleName?: string
  /** A session spared (the caller's, when a password change ends the others). */
  exceptSessionId?: string
}

export type RefreshOutcome =
  | { ok: true, user: UserRow, session: SessionRow, refreshToken: string }
  | { ok: false, reason: 'unknown' | 'inactive' | 'raced' }
  | { ok: false, reason: 'reused', sessionId: string }

export interface SessionService {
  open: (userId: string, meta: ClientMeta, scope: SessionScope) => Promise<{ session: SessionRow, refreshToken: string }>
  /** Rotates a refresh token: at most one caller ever wins a given token. */
  refresh: (refreshToken: string, client: ClientMeta) => Promise<RefreshOutcome>
  sessionOfRefreshToken: (refreshToken: string) => Promise<string | undefined>
  /** The session a refresh token belongs to, whatever its state (to judge a refresh before it rotates). */
  findByRefreshToken: (refreshToken: string) => Promise<SessionRow | undefined>
  /** Ends sessions (all of the user's when sessionId is undefined); returns the ids that ended now. */
  end: (target: EndTarget, reason: string) => Promise<string[]>
  listActive: (userId: string) => Promise<SessionRow[]>
  /** Sessions ended by a statement of another service (a user deleted): refused here and on every instance. */
  announce: (ended: Array<{ id: string, endedAt: Date }>) => Promise<void>
}

/** 256 random bits; stored only as a SHA-256 hash (a fast hash suffices for a secret this long). */
export function newRefreshToken (): { token: string, hash: string } {
  const token = randomBytes(32).toString('base64url')
  return { token, hash: hashRefreshToken(token) }
}

export function hashRefreshToken (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

const REFRESH_TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/

export function createSessionService (db: Database, policy: SessionPolicy, onEnded: (ids: Array<{ id: string, endedAt: Date }>) => Promise<void>): SessionService {
  const isActive = (s: SessionRow, now: Date): boolean =>
    s.endedAt === null && s.expiresAt > now && s.lastUsedAt.getTime() + policy.idleTtlSeconds * 1000 > now.getTime()

  // One statement, so one round trip and atomic: the session and its first refresh token (a login's hot path).
  const openSession = preparedStatement<{ created_at: string | Date, last_used_at: string | Date }>(db, 'session_open', sql`
    with opened as (
      insert into ${sessions} (id, user_id, expires_at, user_agent, ip_address, scope)
      values (${sql.placeholder('id')}, ${sql.placeholder('userId')}, ${sql.placeholder('expiresAt')}, ${sql.placeholder('userAgent')}, ${sql.placeholder('ipAddress')}, ${sql.placeholder('scope')})
      returning id, created_at, last_used_at
    ), token as (
      insert into ${refreshTokens} (session_id, token_hash) select id, ${sql.placeholder('hash')} from opened
    )
    select created_at, last_used_at from opened`)

  async function end (target: EndTarget, reason: string): Promise<string[]> {
    const conditions = [isNull(sessions.endedAt)]
    if (target.userId !== undefined) conditions.push(eq(sessions.userId, target.userId))
    if (target.roleName !== undefined) {
      conditions.push(inArray(sessions.userId, db.select({ id: userRoles.userId }).from(userRoles).where(eq(userRoles.roleName, target.roleName))))
    }
    if (target.sessionId !== undefined) conditions.push(eq(sessions.id, target.sessionId))
    if (conditions.length === 1) throw new Error('end() needs a user or a session')
    if (target.exceptSessionId !== undefined) conditions.push(ne(sessions.id, target.exceptSessionId))
    const ended = await db.update(sessions)
      .set({ endedAt: sql`now()`, endReason: reason })
      .where(and(...conditions))
      .returning({ id: sessions.id, endedAt: sessions.endedAt })
    const rows = ended.map(r => ({ id: r.id, endedAt: r.endedAt ?? new Date() }))
    if (rows.length > 0) await onEnded(rows)
    return rows.map(r => r.id)
  }

  return {
    async open (userId, meta, scope) {
      const { token, hash } = newRefreshToken()
      const id = randomUUID()
      const expiresAt = new Date(Date.now() + policy.absoluteTtlSeconds * 1000)
      const userAgent = meta.userAgent?.slice(0, 512) ?? null
      const ipAddress = meta.ipAddress ?? null
      const rows = await openSession({ id, userId, expiresAt: expiresAt.toISOString(), userAgent, ipAddress, hash, scope })
      const session: SessionRow = {
        id,
        userId,
        createdAt: new Date(rows[0].created_at),
        lastUsedAt: new Date(rows[0].last_used_at),
        expiresAt,
        userAgent,
        ipAddress,
        endedAt: null,
        endReason: null,
        scope
      }
      return { session, refreshToken: token }
    },

    async refresh (refreshToken, client) {
      const ip = client.ipAddress ?? null
      const agent = client.userAgent?.slice(0, 512) ?? null
      if (!REFRESH_TOKEN_SHAPE.test(refreshToken)) return { ok: false, reason: 'unknown' }
      const hash = hashRefreshToken(refreshToken)
      // One transaction: a crash (or a cut connection) between retiring the presented token and storing its successor
      // must not leave a session whose client holds only a retired token. The conditional update is the decision: of
      // any number of racing refreshes, one sees a row (the others wait on its lock, then find it rotated).
      const rotated = await db.transaction(async (tx): Promise<RefreshOutcome | undefined> => {
        const [claimed] = await tx.update(refreshTokens)
          .set({ rotatedAt: sql`now()`, rotatedByIp: ip, rotatedByAgent: agent })
          .where(and(eq(refreshTokens.tokenHash, hash), isNull(refreshTokens.rotatedAt)))
          .returning({ sessionId: refreshTokens.sessionId })
        if (claimed === undefined) return undefined
        const [row] = await tx.select().from(sessions).innerJoin(users, eq(users.id, sessions.userId))
          .where(eq(sessions.id, claimed.sessionId)).limit(1)
        if (row === undefined || !isActive(row.sessions, new Date())) return { ok: false, reason: 'inactive' }
        const { token, hash: nextHash } = newRefreshToken()
        await tx.insert(refreshTokens).values({ sessionId: claimed.sessionId, tokenHash: nextHash })
        const [session] = await tx.update(sessions).set({ lastUsedAt: sql`now()` }).where(eq(sessions.id, claimed.sessionId)).returning()
        return { ok: true, user: row.users, session, refreshToken: token }
      })
      if (rotated !== undefined) return rotated

      // The age is computed by the database, whose clock also wrote rotated_at.
      const [retired] = await db.select({
        sessionId: refreshTokens.sessionId,
        session: sessions,
        ageSeconds: sql<number | null>`extract(epoch from (now() - ${refreshTokens.rotatedAt}))::float8`,
        byIp: refreshTokens.rotatedByIp,
        byAgent: refreshTokens.rotatedByAgent
      }).from(refreshTokens).innerJoin(sessions, eq(sessions.id, refreshTokens.sessionId))
        .where(eq(refreshTokens.tokenHash, hash)).limit(1)
      if (retired?.ageSeconds == null) return { ok: false, reason: 'unknown' }
      // A retry after logout or expiry is not a race that someone won: nobody holds new tokens.
      if (!isActive(retired.session, new Date())) return { ok: false, reason: 'inactive' }
      // Within the grace window, and from the client whose refresh won: its own concurrent requests, a benign race.
      // From any other client it is a second holder, whoever came first (a thief who refreshed before the owner).
      const sameClient = retired.byIp === ip && retired.byAgent === agent
      if (Number(retired.ageSeconds) <= policy.reuseGraceSeconds && sameClient) return { ok: false, reason: 'raced' }
      // A retired token presented again means two parties hold it: end the session (OAuth 2.0 security BCP 4.14).
      await end({ sessionId: retired.sessionId }, 'refresh_token_reuse')
      return { ok: false, reason: 'reused', sessionId: retired.sessionId }
    },

    async sessionOfRefreshToken (refreshToken) {
      if (!REFRESH_TOKEN_SHAPE.test(refreshToken)) return undefined
      const [row] = await db.select({ sessionId: refreshTokens.sessionId }).from(refreshTokens)
        .where(eq(refreshTokens.tokenHash, hashRefreshToken(refreshToken))).limit(1)
      return row?.sessionId
    },

    async findByRefreshToken (refreshToken) {
      if (!REFRESH_TOKEN_SHAPE.test(refreshToken)) return undefined
      const [row] = await db.select({ session: sessions }).from(refreshTokens).innerJoin(sessions, eq(sessions.id, refreshTokens.sessionId))
        .where(eq(refreshTokens.tokenHash, hashRefreshToken(refreshToken))).limit(1)
      return row?.session
    },

    end,

    async announce (ended) {
      if (ended.length > 0) await onEnded(ended)
    },

    async listActive (userId) {
      const now = new Date()
      const rows = await db.select().from(sessions)
        .where(and(eq(sessions.userId, userId), isNull(sessions.endedAt), gt(sessions.expiresAt, now)))
        .orderBy(desc(sessions.lastUsedAt))
      return rows.filter(s => isActive(s, now))
    }
  }
}
