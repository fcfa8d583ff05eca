import { test } from 'tap'
import { eventually, twoInstances, uniqueName } from '../helper.js'
import { counted, deliveredTo, outboxRows, resetMessage, startSmtp } from '../smtp.js'

test('mail: when two instances share one database and both are woken for 20 messages, then each message is delivered exactly once', async (t) => {
  const smtp = await startSmtp(t)
  const [a, b] = await twoInstances(t, { SMTP_URL: smtp.url })
  const prefix = uniqueName('many')
  const recipients = Array.from({ length: 20 }, (_, i) => `${prefix}_${i}@example.com`)

  // All due at once, then both senders racing for them.
  await a.database.db.transaction(async (tx) => {
    for (const to of recipients) await a.mail.enqueue(tx, resetMessage(to).message)
  })
  a.mail.wake()
  b.mail.wake()

  await eventually(() => recipients.every(to => deliveredTo(smtp, to).length > 0), {
    timeoutMs: 30_000,
    what: () => `all 20 delivered (${recipients.filter(to => deliveredTo(smtp, to).length > 0).length} so far)`
  })
  await eventually(async () => (await Promise.all(recipients.map(async to => await outboxRows(a, to)))).every(rows => rows.length === 0), {
    timeoutMs: 10_000,
    what: 'every outbox row deleted'
  })
  // Closing waits for any send still in flight: a second copy would be in by then.
  await Promise.all([a.close(), b.close()])

  t.same(recipients.map(to => deliveredTo(smtp, to).length), recipients.map(() => 1), 'one copy of each')
  const sent = [await counted(a, 'auth_mail_sent_total'), await counted(b, 'auth_mail_sent_total')]
  t.equal(sent[0] + sent[1], 20, `the instances sent 20 between them (${sent.join(' + ')})`)
  t.ok(sent[0] > 0 && sent[1] > 0, 'both took part')
})
