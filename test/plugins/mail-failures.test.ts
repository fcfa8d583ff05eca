import { createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'tap'
import { sql } from 'drizzle-orm'
import { TEST_SMTP_TIMEOUTS, TEST_TIMING } from '../../src/plugins/mail.js'
import { build, buildLogged, eventually, TIMING_MARGIN_MS } from '../helper.js'
import { counted, deliveredTo, linkIn, outboxRows, resetMessage, startSmtp, uniqueAddress } from '../smtp.js'

// Tests run the sender on its NODE_ENV=test clock (plugins/mail.ts): retries within a second, SMTP timeouts of 3 s.
const SEND_WAIT_MS = 15_000

test('mail: when the SMTP server is down, then enqueue still returns at once, the row keeps its attempts and error, and the message arrives once the server is back', async (t) => {
  const smtp = await startSmtp(t)
  await smtp.stop()
  const app = await build(t, { SMTP_URL: smtp.url })
  const to = uniqueAddress()
  const { message, token } = resetMessage(to)

  const started = performance.now()
  await app.mail.enqueue(app.database.db, message)
  t.ok(performance.now() - started < TIMING_MARGIN_MS, 'enqueue does not wait for SMTP')
  await eventually(async () => ((await outboxRows(app, to))[0]?.attempts ?? 0) >= 2, { timeoutMs: SEND_WAIT_MS, what: 'two failed attempts' })
  const [row] = await outboxRows(app, to)
  t.match(row.lastError, /ECONNREFUSED/, 'the row says why')
  t.notMatch(row.lastError, token, 'and holds nothing of the body')
  t.ok(await counted(app, 'auth_mail_retried_total') >= 2, 'each failure counted as a retry')

  await smtp.start()
  await eventually(() => deliveredTo(smtp, to).length > 0, { timeoutMs: SEND_WAIT_MS, what: 'the message after SMTP came back' })
  await eventually(async () => (await outboxRows(app, to)).length === 0, { timeoutMs: SEND_WAIT_MS, what: 'the outbox row deleted' })
  t.equal(deliveredTo(smtp, to).length, 1, 'delivered once')
  t.equal(linkIn(deliveredTo(smtp, to)[0], '/reset-password').searchParams.get('token'), token)
  t.equal(await counted(app, 'auth_mail_sent_total'), 1)
  t.equal(await counted(app, 'auth_mail_failed_total'), 0)
})

test('mail: when a message is past its expiry, then it is deleted unsent and counted as failed', async (t) => {
  const smtp = await startSmtp(t)
  const { app, entries } = await buildLogged(t, { SMTP_URL: smtp.url })
  const to = uniqueAddress()
  await app.mail.enqueue(app.database.db, resetMessage(to, { expiresAt: new Date(Date.now() - 60_000) }).message)

  await eventually(async () => (await outboxRows(app, to)).length === 0, { timeoutMs: SEND_WAIT_MS, what: 'the expired row deleted' })
  // A message that went would have reached the server before its row was deleted.
  t.same(deliveredTo(smtp, to), [], 'not sent')
  t.equal(await counted(app, 'auth_mail_failed_total'), 1)
  t.equal(await counted(app, 'auth_mail_sent_total'), 0)
  const dropped = entries().filter(e => e.msg === 'email dropped unsent: it expired')
  t.match(dropped, [{ level: 50, mail: { to } }], 'logged as an error, with its recipient')
})

test('mail: when the outbox cannot be read, then the sender warns once for the whole outage, keeps trying, and sends once the table is back', async (t) => {
  const smtp = await startSmtp(t)
  const { app, entries } = await buildLogged(t, { SMTP_URL: smtp.url })
  const warnings = (): unknown[] => entries().filter(e => e.msg === 'mail sender cannot read the outbox; retrying every poll')

  await app.database.db.execute(sql`alter table outbox rename to outbox_away`)
  t.teardown(async () => { await app.database.db.execute(sql`alter table if exists outbox_away rename to outbox`) })
  await eventually(() => warnings().length > 0, { timeoutMs: SEND_WAIT_MS, what: 'a warning' })
  // Several polls (200 ms apart under test) fail in this time.
  await sleep(1500)
  t.equal(warnings().length, 1, 'one warning, not one per poll')
  t.match(warnings()[0], { level: 40, err: { message: /outbox/ } }, 'naming what failed')

  await app.database.db.execute(sql`alter table outbox_away rename to outbox`)
  await eventually(() => entries().some(e => e.msg === 'mail sender reads the outbox again'), { timeoutMs: SEND_WAIT_MS, what: 'the sender recovering' })
  const to = uniqueAddress()
  await app.mail.enqueue(app.database.db, resetMessage(to).message)
  await eventually(() => deliveredTo(smtp, to).length > 0, { timeoutMs: SEND_WAIT_MS, what: 'the message after the outage' })
  t.equal(warnings().length, 1, 'still one warning')
})

test('mail: when the SMTP server accepts the connection but never answers, then the send gives up at its greeting timeout, is retried, and closing the app cuts the retry off', async (t) => {
  t.ok(TEST_TIMING.stopTimeoutMs + TIMING_MARGIN_MS < TEST_SMTP_TIMEOUTS.greetingTimeout, 'a stop comes before the greeting timeout would end the send')
  const sockets = new Set<Socket>()
  let connections = 0
  const silent = createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
  })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise(resolve => silent.close(resolve))
  })
  const { port } = silent.address() as { port: number }
  const { app, entries } = await buildLogged(t, { SMTP_URL: `smtp://127.0.0.1:${port}` })
  const to = uniqueAddress()
  await app.mail.enqueue(app.database.db, resetMessage(to).message)

  await eventually(async () => ((await outboxRows(app, to))[0]?.attempts ?? 0) >= 1, { timeoutMs: SEND_WAIT_MS, what: 'the first attempt given up' })
  const [row] = await outboxRows(app, to)
  t.match(row.lastError, /greeting never received/i, 'given up for want of a greeting')
  await eventually(() => connections >= 2, { timeoutMs: SEND_WAIT_MS, what: 'a second attempt' })
  t.ok(sockets.size >= 1, 'a send is waiting for its greeting now')

  let closed = false
  const closing = app.close().then(() => { closed = true })
  await eventually(() => closed, { timeoutMs: 10_000, what: 'app.close() finishing while a send hangs' })
  await closing
  const retries = entries().filter(e => e.msg === 'email not sent, will retry') as Array<{ mail: { error: string } }>
  t.match(retries.at(-1)?.mail.error, /aborted \(mail sender stopped\)/, 'the stop cut the send off, and it is left for a retry')
  await eventually(() => sockets.size === 0, { timeoutMs: 5000, what: 'the hanging connection closed by the sender' })
})
