import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'tap'
import { buildApp } from '../../src/app.js'
import { loggerOptions } from '../../src/logger.js'
import { SENDER_TIMING } from '../../src/services/mail-sender.js'
import { enqueue } from '../../src/services/outbox.js'
import { build, buildLogged, embeddedDatabase, eventually, testConfig, testDatabaseUrl } from '../helper.js'
import { counted, deliveredTo, linkIn, outboxRows, resetMessage, startSmtp, uniqueAddress } from '../smtp.js'

const MAIL_FROM = 'Auth Test <no-reply@auth.test>'

test('mail: when a message is enqueued, then the SMTP server receives it once (recipient, sender, subject, text and HTML) and its outbox row is gone', async (t) => {
  const smtp = await startSmtp(t)
  const { app, lines, entries } = await buildLogged(t, { SMTP_URL: smtp.url, MAIL_FROM })
  t.equal(app.mail.enabled, true)
  const to = uniqueAddress()
  const { message, token } = resetMessage(to)

  await app.mail.enqueue(app.database.db, message)
  await eventually(() => deliveredTo(smtp, to).length > 0, { timeoutMs: 10_000, what: 'the message at the SMTP server' })
  await eventually(async () => (await outboxRows(app, to)).length === 0, { timeoutMs: 10_000, what: 'the outbox row deleted' })

  const [delivered, ...others] = deliveredTo(smtp, to)
  t.same(others, [], 'delivered once')
  t.equal(delivered.subject, message.subject)
  t.match(delivered.from?.value, [{ name: 'Auth Test', address: 'no-reply@auth.test' }], 'from MAIL_FROM')
  t.equal(delivered.text?.trim(), message.text)
  t.equal(delivered.html, message.html)
  t.equal(linkIn(delivered, '/reset-password').searchParams.get('token'), token, 'the link and its token arrive intact')
  t.equal(await counted(app, 'auth_mail_sent_total'), 1)
  t.equal(await counted(app, 'auth_mail_retried_total'), 0)

  const sent = entries().find(e => e.msg === 'email sent') as { mail?: { to?: string } } | undefined
  t.equal(sent?.mail?.to, to, 'the send is logged with its recipient')
  t.notOk(lines.some(line => line.includes(token)), 'no log line holds the link')
})

test('mail: when SMTP_URL is unset outside production, then each message is written to the log with its link, and counts as sent', async (t) => {
  const { app, entries } = await buildLogged(t, { NODE_ENV: 'development' })
  t.equal(app.mail.enabled, true)
  const to = uniqueAddress()
  const { message, token } = resetMessage(to)

  await app.mail.enqueue(app.database.db, message)
  const logged = (): Array<{ msg?: string, mail?: { to?: string, subject?: string, text?: string } }> =>
    entries().filter(e => (e.mail as { to?: string } | undefined)?.to === to)
  await eventually(() => logged().some(e => e.msg === 'email sent'), { timeoutMs: 10_000, what: 'the message handled' })

  const written = logged().find(e => e.mail?.text !== undefined)
  t.equal(written?.mail?.subject, message.subject)
  t.equal(linkIn({ text: written?.mail?.text, subject: written?.mail?.subject }, '/reset-password').searchParams.get('token'), token, 'the link is in the log')
  t.ok(entries().some(e => e.level === 30 && /SMTP_URL is not set/.test(String(e.msg))), 'a line at start says where emails go')
  await eventually(async () => (await outboxRows(app, to)).length === 0, { timeoutMs: 10_000, what: 'the outbox row deleted' })
  t.equal(await counted(app, 'auth_mail_sent_total'), 1)
})

test('mail: when NODE_ENV=production and SMTP_URL is unset, then mail is off: enabled is false, enqueue throws email_unavailable, a warning says so, and nothing is sent', async (t) => {
  const url = await testDatabaseUrl(t)
  // Production requires DATABASE_URL; on the embedded database it only has to pass the checks.
  const config = testConfig({ NODE_ENV: 'production', LOG_LEVEL: 'info', DATABASE_URL: url ?? 'postgres://unused@127.0.0.1:1/unused' })
  const lines: string[] = []
  const app = await buildApp(config, {
    database: url === undefined ? await embeddedDatabase() : undefined,
    logger: { ...loggerOptions(config), stream: { write (line: string) { lines.push(line) } } }
  })
  t.teardown(async () => { await app.close() })

  t.equal(app.mail.enabled, false)
  const to = uniqueAddress()
  const { message } = resetMessage(to)
  await t.rejects(app.mail.enqueue(app.database.db, message), { code: 'email_unavailable' })
  const warnings = lines.map(line => JSON.parse(line) as { level: number, msg: string }).filter(e => e.level === 40)
  t.match(warnings.map(w => w.msg), [/SMTP_URL is not set: password reset and email verification emails are off/])

  // A row written past the decorator: no sender runs to pick it up.
  await enqueue(app.database.db, message)
  await sleep(2 * SENDER_TIMING.pollIntervalMs)
  t.match(await outboxRows(app, to), [{ attempts: 0, lastError: null }], 'left untouched')
  t.equal(await counted(app, 'auth_mail_sent_total'), 0)
})

test('mail: when the SMTP server refuses the login, then the message waits for a retry and neither the outbox nor the log holds the password', async (t) => {
  const password = 'Secret-Smtp-Password-7731'
  const smtp = await startSmtp(t, { credentials: { user: 'mailer', pass: password } })
  const { app, lines } = await buildLogged(t, { SMTP_URL: smtp.url.replace(encodeURIComponent(password), encodeURIComponent('wrong-' + password)) })
  const to = uniqueAddress()
  await app.mail.enqueue(app.database.db, resetMessage(to).message)

  await eventually(async () => (await outboxRows(app, to))[0]?.lastError !== null, { timeoutMs: 10_000, what: 'a failed attempt recorded' })
  const [row] = await outboxRows(app, to)
  t.ok(row.attempts >= 1, 'counted as an attempt')
  t.match(row.lastError, /535|auth/i, 'the error says what went wrong')
  t.notMatch(row.lastError, password, 'but not with which password')
  t.ok(lines.some(line => line.includes('"email not sent, will retry"')), 'the retry is logged')
  t.notOk(lines.some(line => line.includes(password)), 'no log line holds the password')
  t.same(smtp.messages, [], 'nothing delivered')
})

test('mail: when SMTP_URL cannot be parsed, then the app refuses to start, naming the setting without quoting it', async (t) => {
  const password = 'Unparsable-Secret-4410'
  const error = await build(t, { SMTP_URL: `smtp://mailer:${password}@[smtp.example.com` }).then(() => undefined, (e: Error) => e)
  t.match(error, { name: 'ConfigError', message: /SMTP_URL: is not a valid URL/ })
  t.notMatch(JSON.stringify({ ...error, message: error?.message, stack: error?.stack }), password, 'the password is not in the error')
})
