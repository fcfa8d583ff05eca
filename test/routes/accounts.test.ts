import { test } from 'tap'
import { sql } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import {
  as, assertSessionEnded, bearer, build, claimsOf, eventually, formPost, loginPair, me, register, registerAdmin,
  rowsOf, TIMING_MARGIN_MS, twoInstances, uniqueName
} from '../helper.js'
import { deliveredTo, linkIn, startSmtp, type Smtp } from '../smtp.js'

const PUBLIC_URL = 'https://app.example.test/base'
const NEW_PASSWORD = 'a brand new passphrase'

const json = (method: 'POST' | 'DELETE', url: string, payload: object, token?: string) =>
  ({ method, url, payload, ...(token === undefined ? {} : { headers: bearer(token) }) })

/** The delivered messages to `address` whose subject starts with `subject`, once there are `count` of them. */
async function messagesTo (smtp: Smtp, address: string, subject: string, count = 1) {
  const of = () => deliveredTo(smtp, address).filter(m => (m.subject ?? '').startsWith(subject))
  await eventually(() => of().length >= count, { timeoutMs: 10_000, what: () => `${count} "${subject}" message(s) to ${address}` })
  return of()
}

const tokenOf = (message: Parameters<typeof linkIn>[0], path: string): string => linkIn(message, path).searchParams.get('token') as string

async function mailApp (t: Parameters<typeof build>[0], overrides: Record<string, unknown> = {}): Promise<{ app: FastifyInstance, smtp: Smtp }> {
  const smtp = await startSmtp(t)
  const app = await build(t, { SMTP_URL: smtp.url, PUBLIC_URL, ...overrides })
  return { app, smtp }
}

test('password policy: when a password is common, too short for the setting, or contains the username or the email\'s local part, then 400 names the field and the reason and never echoes the password', async (t) => {
  const app = await build(t, { PASSWORD_MIN_LENGTH: 12 })
  const username = uniqueName('policy')
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['common', { password: 'password1234' }, /too common/],
    ['common whatever the case', { password: 'Password1234' }, /too common/],
    ['short for the setting', { password: 'tenletters' }, /at least 12 characters/],
    ['contains the username', { password: `my ${username.toUpperCase()} rocks` }, /must not contain the username/],
    ['contains the local part', { password: 'xx-mailbox-local-xx', email: 'Mailbox-Local@example.com' }, /must not contain the email address/]
  ]
  for (const [what, fields, reason] of cases) {
    const body: Record<string, string> = { username, email: `${username}@example.com`, ...fields }
    const res = await app.inject({ method: 'POST', url: '/auth/register', payload: body })
    t.equal(res.statusCode, 400, what)
    t.equal(res.json().errors[0].field, 'password', what)
    t.match(res.json().errors[0].message, reason, what)
    t.notOk(res.body.includes(body.password), `${what}: the password is not in the answer`)
  }
  const ok = await app.inject({ method: 'POST', url: '/auth/register', payload: { username, email: `${username}@example.com`, password: 'zebra cobalt lantern 42' } })
  t.equal(ok.statusCode, 201, 'a long, uncommon password is taken')
  t.equal(ok.json().email_verified, false, 'a new user is unverified')

  const root = await registerAdmin(app)
  const created = await app.inject(as(root.token, { method: 'POST', url: '/admin/users', payload: { username: uniqueName('adm'), email: `${uniqueName('adm')}@example.com`, password: 'iloveyou1234' } }))
  t.equal(created.statusCode, 400, 'administrators obey the policy too')
  t.match(created.json().errors[0], { field: 'password', message: /too common/ })
})

test('POST /users/me/password: when the password changes, then every other session ends on every instance within a second and the caller\'s stays; a wrong current password is 400 naming it', async (t) => {
  const [a, b] = await twoInstances(t)
  const user = await register(a)
  const mine = await loginPair(a, user)
  const other = await loginPair(b, user)
  t.equal((await me(b, other.access)).statusCode, 200)

  const wrong = await a.inject(json('POST', '/users/me/password', { current_password: 'not it at all', new_password: NEW_PASSWORD }, mine.access))
  t.equal(wrong.statusCode, 400)
  t.same(wrong.json().errors, [{ field: 'current_password', message: 'is not the current password' }])
  const weak = await a.inject(json('POST', '/users/me/password', { current_password: user.password, new_password: 'qwertyuiop' }, mine.access))
  t.equal(weak.statusCode, 400)
  t.equal(weak.json().errors[0].field, 'new_password')

  const changed = await a.inject(json('POST', '/users/me/password', { current_password: user.password, new_password: NEW_PASSWORD }, mine.access))
  t.equal(changed.statusCode, 204)
  await eventually(async () => (await me(b, other.access)).statusCode === 401, { timeoutMs: TIMING_MARGIN_MS, what: 'the other session refused on the other instance' })
  assertSessionEnded(t, await me(b, other.access), 'other session')
  t.equal((await me(a, mine.access)).statusCode, 200, 'the caller\'s session stays')
  t.equal((await a.inject(formPost('/auth/token', { username: user.username, password: user.password }))).statusCode, 401, 'the old password is refused')
  t.equal((await a.inject(formPost('/auth/token', { username: user.username, password: NEW_PASSWORD }))).statusCode, 200, 'the new one works')
})

test('password reset: when an address is known or unknown, then the answer is the same 202; only the known one gets a link, which sets a new password once, ends every session and verifies the address', async (t) => {
  const { app, smtp } = await mailApp(t)
  const user = await register(app)
  const pair = await loginPair(app, user)
  const unknown = await app.inject(json('POST', '/auth/password/forgot', { email: `nobody-${user.username}@example.com` }))
  const known = await app.inject(json('POST', '/auth/password/forgot', { email: user.email.toUpperCase() }))
  t.equal(known.statusCode, 202)
  t.equal(unknown.statusCode, 202)
  t.same(known.json(), unknown.json(), 'the same body')

  const [message] = await messagesTo(smtp, user.email, 'Reset your password')
  const link = linkIn(message, '/reset-password')
  t.equal(link.origin + link.pathname, `${PUBLIC_URL}/reset-password`, 'the link is under PUBLIC_URL')
  t.match(message.html, new RegExp(`href="${PUBLIC_URL}/reset-password\\?token=`), 'an HTML body with the link too')
  const token = link.searchParams.get('token') as string
  t.ok(Buffer.from(token, 'base64url').length >= 32, 'at least 256 random bits')
  const stored = rowsOf<{ token_hash: string }>(await app.database.db.execute(sql`select token_hash from account_tokens where purpose = 'password_reset'`))
  t.notOk(stored.some(r => r.token_hash === token), 'the token is stored only as a hash')

  const weak = await app.inject(json('POST', '/auth/password/reset', { token, password: 'password1' }))
  t.equal(weak.statusCode, 400)
  t.equal(weak.json().errors[0].field, 'password', 'a refused password does not use the token up')
  const reset = await app.inject(json('POST', '/auth/password/reset', { token, password: NEW_PASSWORD }))
  t.equal(reset.statusCode, 204)
  assertSessionEnded(t, await me(app, pair.access), 'the session from before the reset')
  const fresh = await loginPair(app, { username: user.username, password: NEW_PASSWORD })
  t.equal((await me(app, fresh.access)).json().email_verified, true, 'the link proved the address')

  const again = await app.inject(json('POST', '/auth/password/reset', { token, password: 'yet another passphrase' }))
  const forged = await app.inject(json('POST', '/auth/password/reset', { token: 'A'.repeat(43), password: 'yet another passphrase' }))
  for (const res of [again, forged]) {
    t.equal(res.statusCode, 400)
    t.match(res.json(), { code: 'invalid_token', detail: 'The link is invalid, expired or already used' })
  }
  t.equal(deliveredTo(smtp, `nobody-${user.username}@example.com`).length, 0, 'an unknown address gets nothing')
})

test('password reset: when the token has expired, a newer reset was asked for, or the password changed meanwhile, then the link is dead (400 invalid_token)', async (t) => {
  const { app, smtp } = await mailApp(t)
  const user = await register(app)
  const ask = async () => { t.equal((await app.inject(json('POST', '/auth/password/forgot', { email: user.email }))).statusCode, 202) }
  // Each request is at most one message a minute per address: step the clock of the last one back to ask again.
  const olderThanAMinute = async () => { await app.database.db.execute(sql`update account_tokens set created_at = now() - interval '2 minutes'`) }

  await ask()
  const first = tokenOf((await messagesTo(smtp, user.email, 'Reset your password'))[0], '/reset-password')
  await ask()
  await new Promise(resolve => setTimeout(resolve, 300))
  t.equal((await messagesTo(smtp, user.email, 'Reset your password')).length, 1, 'a second request within the minute sends nothing')
  await olderThanAMinute()
  await ask()
  const second = tokenOf((await messagesTo(smtp, user.email, 'Reset your password', 2))[1], '/reset-password')
  const refusedFirst = await app.inject(json('POST', '/auth/password/reset', { token: first, password: NEW_PASSWORD }))
  t.equal(refusedFirst.json().code, 'invalid_token', 'a newer request kills the older link')

  await app.database.db.execute(sql`update account_tokens set expires_at = now() - interval '1 second'`)
  t.equal((await app.inject(json('POST', '/auth/password/reset', { token: second, password: NEW_PASSWORD }))).json().code, 'invalid_token', 'expired')

  await olderThanAMinute()
  await ask()
  const third = tokenOf((await messagesTo(smtp, user.email, 'Reset your password', 3))[2], '/reset-password')
  const pair = await loginPair(app, user)
  t.equal((await app.inject(json('POST', '/users/me/password', { current_password: user.password, new_password: NEW_PASSWORD }, pair.access))).statusCode, 204)
  t.equal((await app.inject(json('POST', '/auth/password/reset', { token: third, password: 'yet another passphrase' }))).json().code, 'invalid_token', 'a password change kills the link')
})

test('password reset: when SMTP is down at the request, then the 202 comes at once and the message arrives after SMTP is back', async (t) => {
  const { app, smtp } = await mailApp(t)
  const user = await register(app)
  await smtp.stop()
  t.equal((await app.inject(json('POST', '/auth/password/forgot', { email: user.email }))).statusCode, 202, 'answered with SMTP down')
  await eventually(async () => rowsOf<{ attempts: number }>(await app.database.db.execute(sql`select attempts from outbox where recipient = ${user.email} and subject = 'Reset your password'`)).some(r => r.attempts > 0),
    { timeoutMs: 10_000, what: 'a failed attempt' })
  await smtp.start()
  const [message] = await messagesTo(smtp, user.email, 'Reset your password')
  t.equal((await app.inject(json('POST', '/auth/password/reset', { token: tokenOf(message, '/reset-password'), password: NEW_PASSWORD }))).statusCode, 204)
})

test('email verification: when a user registers, then a link verifies the address (in /users/me, the admin API and new tokens); a changed address is unverified again and old links die', async (t) => {
  const { app, smtp } = await mailApp(t)
  const root = await registerAdmin(app)
  const user = await register(app)
  const before = await loginPair(app, user)
  t.equal(claimsOf(before.access).email_verified, false)
  const [message] = await messagesTo(smtp, user.email, 'Confirm your email address')
  const token = tokenOf(message, '/verify-email')

  t.equal((await app.inject(json('POST', '/auth/email/verify', { token }))).statusCode, 204)
  t.equal((await me(app, before.access)).json().email_verified, true)
  t.equal(claimsOf((await loginPair(app, user)).access).email_verified, true, 'new tokens carry it')
  t.equal((await app.inject(as(root.token, { method: 'GET', url: `/admin/users/${user.id}` }))).json().email_verified, true)
  t.equal((await app.inject(json('POST', '/auth/email/verify', { token }))).json().code, 'invalid_token', 'single use')

  const resent = await app.inject(json('POST', '/auth/email/verify/resend', {}, before.access))
  t.equal(resent.statusCode, 202, 'resend answers 202 when verified already, and sends nothing')

  const newAddress = `new-${user.email}`
  const patched = await app.inject(as(root.token, { method: 'PATCH', url: `/admin/users/${user.id}`, payload: { email: newAddress } }))
  t.equal(patched.json().email_verified, false, 'a changed address is unverified')
  const [second] = await messagesTo(smtp, newAddress, 'Confirm your email address')
  // A link to the old address, asked for before the change, proves nothing about the new one.
  await app.database.db.execute(sql`update account_tokens set email = ${user.email} where user_id = ${user.id}`)
  t.equal((await app.inject(json('POST', '/auth/email/verify', { token: tokenOf(second, '/verify-email') }))).json().code, 'invalid_token')
  t.equal((await me(app, before.access)).json().email_verified, false)

  const resend = await app.inject(json('POST', '/auth/email/verify/resend', {}, before.access))
  t.equal(resend.statusCode, 202)
  const [third] = await messagesTo(smtp, newAddress, 'Confirm your email address', 2).then(list => list.slice(1))
  t.equal((await app.inject(json('POST', '/auth/email/verify', { token: tokenOf(third, '/verify-email') }))).statusCode, 204)
  t.equal((await me(app, before.access)).json().email_verified, true)
  t.equal((await app.inject({ method: 'POST', url: '/auth/email/verify/resend' })).statusCode, 401, 'resend needs a token')
})

test('REQUIRE_VERIFIED_EMAIL: when an unverified user logs in with the right password, then invalid_grant "Email address is not verified" and a fresh link; a wrong password hears the usual answer', async (t) => {
  const { app, smtp } = await mailApp(t, { REQUIRE_VERIFIED_EMAIL: true })
  const user = await register(app)
  await messagesTo(smtp, user.email, 'Confirm your email address')
  await app.database.db.execute(sql`update account_tokens set created_at = now() - interval '2 minutes'`)
  const refused = await app.inject(formPost('/auth/token', { username: user.username, password: user.password }))
  t.equal(refused.statusCode, 401)
  t.same(refused.json(), { error: 'invalid_grant', error_description: 'Email address is not verified' })
  const wrong = await app.inject(formPost('/auth/token', { username: user.username, password: 'not the password' }))
  t.equal(wrong.json().error_description, 'Incorrect username or password')
  const [, fresh] = await messagesTo(smtp, user.email, 'Confirm your email address', 2)
  t.equal((await app.inject(json('POST', '/auth/email/verify', { token: tokenOf(fresh, '/verify-email') }))).statusCode, 204)
  t.equal((await app.inject(formPost('/auth/token', { username: user.username, password: user.password }))).statusCode, 200)
})

test('DELETE /users/me: when the right password is given, then the user and their sessions are gone on every instance within a second; a wrong one is 400, the last administrator 409', async (t) => {
  const [a, b] = await twoInstances(t)
  const user = await register(a)
  const mine = await loginPair(a, user)
  const other = await loginPair(b, user)
  const wrong = await a.inject(json('DELETE', '/users/me', { password: 'not the password' }, mine.access))
  t.equal(wrong.statusCode, 400)
  t.same(wrong.json().errors, [{ field: 'password', message: 'is not the current password' }])
  t.equal((await a.inject(json('DELETE', '/users/me', { password: user.password }, mine.access))).statusCode, 204)
  await eventually(async () => (await me(b, other.access)).statusCode === 401, { timeoutMs: TIMING_MARGIN_MS, what: 'the token refused on the other instance' })
  t.equal((await a.inject(formPost('/auth/token', { username: user.username, password: user.password }))).statusCode, 401, 'the user is gone')

  const root = await registerAdmin(a)
  // The embedded database is shared by this file's tests: make root the only administrator.
  await a.database.db.execute(sql`delete from user_roles where role_name = 'admin' and user_id <> ${root.id}`)
  const last = await a.inject(json('DELETE', '/users/me', { password: root.password }, root.token))
  t.equal(last.statusCode, 409)
  t.equal(last.json().code, 'last_admin')
})
