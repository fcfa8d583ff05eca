import { test } from 'tap'
import { describeError, retryDelayMs, SENDER_TIMING } from '../../src/services/mail-sender.js'

test('retryDelayMs: when sends keep failing, then the wait doubles from 1 s and stops at 5 minutes', async (t) => {
  t.same([1, 2, 3, 4, 5].map(n => retryDelayMs(n)), [1000, 2000, 4000, 8000, 16_000])
  t.equal(retryDelayMs(9), 256_000)
  t.equal(retryDelayMs(10), SENDER_TIMING.retryMaxMs, 'capped')
  t.equal(retryDelayMs(10_000), 300_000, 'a very long streak stays at the cap')
})

test('describeError: when an error carries a URL with credentials or several lines, then one short line without them is kept', async (t) => {
  const error = Object.assign(new Error('connect failed to smtps://mailer:hunter2-secret@smtp.example.com:465\n  at somewhere'), { code: 'ECONNECTION' })
  const line = describeError(error)
  t.equal(line, 'ECONNECTION: connect failed to smtps://[REDACTED]@smtp.example.com:465 at somewhere')
  t.equal(describeError(Object.assign(new Error('Greeting never received'), { code: 'ETIMEDOUT' })), 'ETIMEDOUT: Greeting never received')
  t.equal(describeError('x'.repeat(500)).length, 200, 'bounded')
  const aborted = Object.assign(new Error('Message sending aborted', { cause: new Error('mail sender stopped') }), { code: 'EABORT' })
  t.equal(describeError(aborted), 'EABORT: Message sending aborted (mail sender stopped)', 'an abort says why')
})
