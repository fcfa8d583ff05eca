import fp from 'fastify-plugin'
import { is, pgCore } from '../db/orm.js'
import { Counter } from 'prom-client'
import { logTransport, smtpTransport, type SmtpTimeouts } from '../adapters/mail-transports.js'
import type { Database } from '../db/client.js'
import { MailSender, MailUnavailableError, type MailTransport, type SenderTiming } from '../services/mail-sender.js'
import { enqueue, type OutgoingMessage } from '../services/outbox.js'

export interface Mail {
  /** False in production without SMTP_URL: nothing is sent, and enqueue throws MailUnavailableError. */
  enabled: boolean
  /**
   * Writes the message to the outbox, in `db`'s transaction when it is one. Outside a transaction the sender is woken
   * at once; inside one, call wake() after the commit (else the next poll, within a second, picks it up).
   */
  enqueue: (db: Pick<Database, 'insert'>, message: OutgoingMessage) => Promise<void>
  /** Has this instance's sender read the outbox now. */
  wake: () => void
}

declare module 'fastify' {
  interface FastifyInstance {
    mail: Mail
  }
}

const SMTP_TIMEOUTS: SmtpTimeouts = { connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 10_000 }
// NODE_ENV=test runs the same sender on a faster clock, so that a retry or a timeout costs a test a second, not minutes.
// The stop timeout is below the SMTP ones there, so that tests see a stop cut a hanging send off.
export const TEST_TIMING = { pollIntervalMs: 200, retryBaseMs: 100, retryMaxMs: 1000, leaseMs: 15_000, sendTimeoutMs: 8000, stopTimeoutMs: 500, batchSize: 5 } satisfies Partial<SenderTiming>
// The socket's idle timeout longer than the greeting's, as in production: a silent server is given up on for want of a
// greeting, not by whichever of two equal timers a loaded machine fires first (both were 3000 ms: a flaky test).
export const TEST_SMTP_TIMEOUTS: SmtpTimeouts = { connectionTimeout: 3000, greetingTimeout: 3000, socketTimeout: 6000 }

/** Emails through the outbox (services/outbox.ts) and a background sender, once each across instances. */
export default fp(async (app) => {
  const { SMTP_URL, MAIL_FROM, NODE_ENV } = app.config
  const { registry } = app.metrics
  const sentTotal = new Counter({ name: 'auth_mail_sent_total', help: 'Emails accepted by the SMTP server (or logged, without SMTP_URL outside production)', registers: [registry] })
  const retriedTotal = new Counter({ name: 'auth_mail_retried_total', help: 'Sends that failed and were put back for a later try', registers: [registry] })
  const failedTotal = new Counter({ name: 'auth_mail_failed_total', help: 'Emails dropped unsent because they expired', registers: [registry] })

  let transport: MailTransport
  if (SMTP_URL !== undefined) {
    transport = smtpTransport(SMTP_URL, NODE_ENV === 'test' ? TEST_SMTP_TIMEOUTS : SMTP_TIMEOUTS)
  } else if (NODE_ENV !== 'production') {
    app.log.info('SMTP_URL is not set: emails are written to the log instead of sent (outside production only)')
    transport = logTransport(app.log)
  } else {
    app.log.warn('SMTP_URL is not set: password reset and email verification emails are off (their routes answer 503 email_unavailable)')
    app.decorate('mail', {
      enabled: false,
      enqueue: async () => { throw new MailUnavailableError() },
      wake: () => {}
    } satisfies Mail)
    return
  }

  const sender = new MailSender({
    db: app.database.db,
    transport,
    from: MAIL_FROM,
    timing: NODE_ENV === 'test' ? TEST_TIMING : undefined,
    on: {
      sent: (mail) => {
        sentTotal.inc()
        app.log.info({ mail }, 'email sent')
      },
      retried: (mail) => {
        retriedTotal.inc()
        app.log.warn({ mail }, 'email not sent, will retry')
      },
      failed: (mail) => {
        failedTotal.inc()
        app.log.error({ mail }, 'email dropped unsent: it expired')
      },
      databaseError: (error) => { app.log.warn({ err: { message: error } }, 'mail sender cannot read the outbox; retrying every poll') },
      databaseRecovered: () => { app.log.info('mail sender reads the outbox again') }
    }
  })
  app.addHook('onReady', async () => { sender.start() })
  // preClose: before the database plugin's onClose ends the connections.
  app.addHook('preClose', async () => { await sender.stop() })

  app.decorate('mail', {
    enabled: true,
    enqueue: async (db, message) => {
      await enqueue(db, message)
      // Inside a transaction the row is not visible to the sender before the commit.
      if (!is(db, pgCore.PgTransaction)) sender.wake()
    },
    wake: () => { sender.wake() }
  } satisfies Mail)
}, { name: 'mail', dependencies: ['config', 'database', 'metrics'] })
