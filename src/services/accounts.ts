import { createHash, randomBytes } from 'node:crypto'
import { and, desc, eq, gt, sql } from '../db/orm.js'
import type { Database } from '../db/client.js'
import { accountTokens, users, type UserRow } from '../db/schema.js'
import type { LoginThrottle, Throttled } from './login-throttle.js'
import type { OutgoingMessage } from './outbox.js'
import type { PasswordHasher } from './password-hasher.js'
import type { PasswordPolicy } from './password-policy.js'
import type { SessionService } from './sessions.js'
import type { UserService } from './users.js'

type Purpose = 'password_reset' | 'email_verify'

/** What the account service needs of the mail plugin. */
export interface MailQueue {
  enabled: boolean
  enqueue: (db: Pick<Database, 'insert'>, message: OutgoingMessage) => Promise<void>
  wake: () => void
}

export interface AccountOptions {
  db: Database
  hasher: PasswordHasher
  policy: PasswordPolicy
  users: UserService
  sessions: SessionService
  mail: MailQueue
  throttle: LoginThrottle
  /** The base of links in emails (PUBLIC_URL), without a trailing slash. */
  publicUrl: string
  resetTtlSeconds: number
  verifyTtlSeconds: number
}

export type PasswordChange =
  | { ok: true, ended: number }
  | { ok: false, field: 'current_password' | 'new_password', message: string }
  | { ok: false, reason: 'not_found' }
  | Throttled

export type PasswordReset =
  | { ok: true, userId: string, ended: number }
  | { ok: false, reason: 'invalid_token' }
  | { ok: false, reason: 'policy', message: string }

export interface AccountService {
  /**
   * Checks the current password (unless the account's logins are throttled: from `ip`, a wrong one counts as a failed
   * login), sets the new one, ends every other session of the user and kills reset links.
   */
  changePassword: (userId: string, sessionId: string, current: string, next: string, ip: string) => Promise<PasswordChange>
  /** Sends a reset link to the address if a user has it (at most one per address a minute); silent either way. */
  requestPasswordReset: (email: string) => Promise<{ sent: boolean, userId?: string }>
  /** Sets the password of the token's user, uses the token up and ends all of their sessions. */
  resetPassword: (token: string, password: string) => Promise<PasswordReset>
  /** Sends a verification link to the user's address (at most one a minute when `throttle`). */
  sendVerification: (user: Pick<UserRow, 'id' | 'username' | 'email' | 'emailVerified'>, options?: { throttle?: boolean }) => Promise<boolean>
  /** Marks the address verified if the token is good and the address is still the user's; the user's id, or undefined. */
  verifyEmail: (token: string) => Promise<string | undefined>
}

/** The shortest time between two messages of one kind to one user: enough to stop a mail bomb, short enough to retry. */
export const EMAIL_INTERVAL_SECONDS = 60

/** 256 random bits, base64url; only a SHA-256 of it is stored (a fast hash suffices for a secret this long). */
function newToken (): { token: string, hash: string } {
  const token = randomBytes(32).toString('base64url')
  return { token, hash: hashToken(token) }
}
const hashToken = (token: string): string => createHash('sha256').update(token).digest('base64url')
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string)

function message (to: string, subject: string, lines: string[], link: string, expiresAt: Date): OutgoingMessage {
  const text = lines.map(line => line.replace('{link}', link)).join('\n\n') + '\n'
  const html = '<!doctype html><html><body>' +
    lines.map(line => `<p>${escapeHtml(line).replace('{link}', `<a href="${escapeHtml(link)}">${escapeHtml(link)}</a>`)}</p>`).join('') +
    '</body></html>'
  return { to, subject, text, html, expiresAt }
}

const minutes = (seconds: number): string => seconds % 3600 === 0 ? `${seconds / 3600} hour${seconds === 3600 ? '' : 's'}` : `${Math.round(seconds / 60)} minutes`

export function createAccountService (options: AccountOptions): AccountService {
  const { db, hasher, policy, users: userService, sessions, mail, throttle, publicUrl, resetTtlSeconds, verifyTtlSeconds } = options

  /** Whether a token of this purpose went to the user less than the interval ago. */
  async function sentRecently (userId: string, purpose: Purpose): Promise<boolean> {
    const [recent] = await db.select({ id: accountTokens.id }).from(accountTokens)
      .where(and(eq(accountTokens.userId, userId), eq(accountTokens.purpose, purpose),
        gt(accountTokens.createdAt, sql`now() - make_interval(secs => ${EMAIL_INTERVAL_SECONDS})`)))
      .orderBy(desc(accountTokens.createdAt)).limit(1)
    return recent !== undefined
  }

  /** A new token replaces the user's older ones of that purpose; the message carrying it commits with it. */
  async function issue (user: Pick<UserRow, 'id' | 'email'>, purpose: Purpose, ttlSeconds: number, compose: (token: string, expiresAt: Date) => OutgoingMessage): Promise<void> {
    const { token, hash } = newToken()
    const expiresAt = new Date(Date.now() + ttlSeconds * 1000)
    await db.transaction(async (tx) => {
      await tx.delete(accountTokens).where(and(eq(accountTokens.userId, user.id), eq(accountTokens.purpose, purpose)))
      await tx.insert(accountTokens).values({ userId: user.id, purpose, tokenHash: hash, email: user.email, expiresAt })
      await mail.enqueue(tx, compose(token, expiresAt))
    })
    mail.wake()
  }

  /** The live token of that purpose, locked for the caller's transaction; undefined for a bad, used or expired one. */
  async function claim (tx: Database, token: string, purpose: Purpose) {
    if (!TOKEN_SHAPE.test(token)) return undefined
    const [row] = await tx.select().from(accountTokens)
      .where(and(eq(accountTokens.tokenHash, hashToken(token)), eq(accountTokens.purpose, purpose), gt(accountTokens.expiresAt, sql`now()`)))
      .limit(1).for('update')
    return row
  }

  return {
    async changePassword (userId, sessionId, current, next, ip) {
      // Read afresh, not from the user cache: the hash must be the one in force now.
      const [user] = await db.select().from(users).where(eq(users.id, userId)).limit(1)
      if (user === undefined) return { ok: false, reason: 'not_found' }
      // Someone holding a stolen access token may be guessing the password: the login throttle of the username counts.
      const checked = await throttle.guard(user.username, ip, async () => ({ ok: await hasher.verify(user.passwordHash, current) }))
      if (!checked.ok) return 'reason' in checked ? checked : { ok: false, field: 'current_password', message: 'is not the current password' }
      const problem = await policy.problem(next, user)
      if (problem !== undefined) return { ok: false, field: 'new_password', message: problem }
      const passwordHash = await hasher.hash(next)
      await db.transaction(async (tx) => {
        await tx.update(users).set({ passwordHash, updatedAt: sql`now()` }).where(eq(users.id, user.id))
        // Reset links die with any change of password.
        await tx.delete(accountTokens).where(and(eq(accountTokens.userId, user.id), eq(accountTokens.purpose, 'password_reset')))
      })
      userService.forget(user.id)
      const ended = await sessions.end({ userId: user.id, exceptSessionId: sessionId }, 'password_changed')
      return { ok: true, ended: ended.length }
    },

    async requestPasswordReset (email) {
      const [user] = await db.select().from(users).where(sql`lower(${users.email}) = lower(${email})`).limit(1)
      // A disabled account cannot sign in with a new password either: nothing to send.
      if (user === undefined || user.disabledAt !== null) return { sent: false }
      if (await sentRecently(user.id, 'password_reset')) return { sent: false, userId: user.id }
      await issue(user, 'password_reset', resetTtlSeconds, (token, expiresAt) => message(user.email, 'Reset your password', [
        `Someone, hopefully you, asked to reset the password of the account ${user.username}.`,
        `To choose a new password, open this link within ${minutes(resetTtlSeconds)}: {link}`,
        'If it was not you, ignore this message: your password stays as it is.'
      ], `${publicUrl}/reset-password?token=${token}`, expiresAt))
      return { sent: true, userId: user.id }
    },

    async resetPassword (token, password) {
      // Judged before hashing, so that a bad token costs no hash; judged again under the lock.
      const found = await claim(db, token, 'password_reset')
      if (found === undefined) return { ok: false, reason: 'invalid_token' }
      const user = await userService.findById(found.userId)
      if (user === undefined) return { ok: false, reason: 'invalid_token' }
      const problem = await policy.problem(password, user)
      if (problem !== undefined) return { ok: false, reason: 'policy', message: problem }
      const passwordHash = await hasher.hash(password)
      const done = await db.transaction(async (tx) => {
        const row = await claim(tx as unknown as Database, token, 'password_reset')
        if (row === undefined) return false
        // The link proves the address it was sent to, if that is still the user's.
        await tx.update(users).set({
          passwordHash,
          updatedAt: sql`now()`,
          emailVerified: sql`${users.emailVerified} or lower(${users.email}) = lower(${row.email})`
        }).where(eq(users.id, row.userId))
        // Single use, and every other reset link of the user dies with the change.
        await tx.delete(accountTokens).where(and(eq(accountTokens.userId, row.userId), eq(accountTokens.purpose, 'password_reset')))
        return true
      })
      if (!done) return { ok: false, reason: 'invalid_token' }
      userService.forget(found.userId)
      const ended = await sessions.end({ userId: found.userId }, 'password_reset')
      return { ok: true, userId: found.userId, ended: ended.length }
    },

    async sendVerification (user, { throttle = false } = {}) {
      if (!mail.enabled || user.emailVerified) return false
      if (throttle && await sentRecently(user.id, 'email_verify')) return false
      await issue(user, 'email_verify', verifyTtlSeconds, (token, expiresAt) => message(user.email, 'Confirm your email address', [
        `Please confirm that ${user.email} is the email address of the account ${user.username}.`,
        `Open this link within ${minutes(verifyTtlSeconds)}: {link}`,
        'If you did not create this account, ignore this message.'
      ], `${publicUrl}/verify-email?token=${token}`, expiresAt))
      return true
    },

    async verifyEmail (token) {
      const userId = await db.transaction(async (tx) => {
        const row = await claim(tx as unknown as Database, token, 'email_verify')
        if (row === undefined) return undefined
        await tx.delete(accountTokens).where(and(eq(accountTokens.userId, row.userId), eq(accountTokens.purpose, 'email_verify')))
        // A link sent to an address the user has since left proves nothing about the new one.
        const [updated] = await tx.update(users).set({ emailVerified: true, updatedAt: sql`now()` })
          .where(and(eq(users.id, row.userId), sql`lower(${users.email}) = lower(${row.email})`)).returning({ id: users.id })
        return updated?.id
      })
      if (userId !== undefined) userService.forget(userId)
      return userId
    }
  }
}
