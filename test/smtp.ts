import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { eq } from 'drizzle-orm'
import { SMTPServer } from 'smtp-server'
import { simpleParser, type ParsedMail } from 'mailparser'
import { outbox, type OutboxRow } from '../src/db/schema.js'
import type { OutgoingMessage } from '../src/services/outbox.js'
import { freePort, uniqueName } from './helper.js'

interface TestContext {
  teardown: (fn: () => unknown) => void
}

export interface Smtp {
  port: number
  /** smtp://127.0.0.1:<port>, for SMTP_URL (with the credentials when the server requires some). */
  url: string
  /** Every message delivered so far, parsed, in order of delivery. */
  messages: ParsedMail[]
  /** Stops listening (the port is then refused); start() listens again on the same port. */
  stop: () => Promise<void>
  start: () => Promise<void>
}

export interface SmtpOptions {
  port?: number
  /** Require AUTH with these (else any or no login is accepted). */
  credentials?: { user: string, pass: string }
}

/** A real SMTP server on 127.0.0.1 (plain text, no STARTTLS), stopped when the test ends. */
export async function startSmtp (t: TestContext, options: SmtpOptions = {}): Promise<Smtp> {
  const port = options.port ?? await freePort()
  const messages: ParsedMail[] = []
  const { credentials } = options
  let server: SMTPServer | undefined

  const start = async (): Promise<void> => {
    if (server !== undefined) return
    const listening = new SMTPServer({
      secure: false,
      disabledCommands: ['STARTTLS'],
      authOptional: credentials === undefined,
      allowInsecureAuth: true,
      logger: false,
      closeTimeout: 100,
      // No reverse DNS lookup of 127.0.0.1: it can stall each connection where DNS is slow.
      disableReverseLookup: true,
      onAuth (auth, _session, callback) {
        if (credentials === undefined || (auth.username === credentials.user && auth.password === credentials.pass)) {
          callback(null, { user: auth.username })
        } else {
          callback(new Error('Invalid username or password'))
        }
      },
      onData (stream, _session, callback) {
        // Accepted (250) only once parsed and kept: a message the client sees delivered is in `messages`.
        simpleParser(stream).then((parsed) => { messages.push(parsed); callback() }, callback)
      }
    })
    await new Promise<void>((resolve, reject) => {
      listening.once('error', reject)
      listening.listen(port, '127.0.0.1', () => { listening.off('error', reject); resolve() })
    })
    server = listening
  }
  const stop = async (): Promise<void> => {
    const closing = server
    server = undefined
    if (closing !== undefined) await new Promise<void>(resolve => { closing.close(() => resolve()) })
  }

  await start()
  t.teardown(stop)
  const auth = credentials === undefined ? '' : `${encodeURIComponent(credentials.user)}:${encodeURIComponent(credentials.pass)}@`
  return { port, url: `smtp://${auth}127.0.0.1:${port}`, messages, stop, start }
}

/** The first link to PUBLIC_URL + `path` with a token in the message's text body; throws when there is none. */
export function linkIn (message: Pick<ParsedMail, 'text' | 'subject'>, path: string): URL {
  const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const match = new RegExp(`https?://[^\\s"<>]*?${escaped}\\?token=[^\\s"<>&]+`).exec(message.text ?? '')
  if (match === null) throw new Error(`no ${path}?token=... link in "${message.subject ?? ''}": ${message.text ?? '(no text body)'}`)
  return new URL(match[0])
}

/** The messages delivered to one address. */
export const deliveredTo = (smtp: Pick<Smtp, 'messages'>, address: string): ParsedMail[] =>
  smtp.messages.filter(m => [m.to ?? []].flat().some(to => to.value.some(v => v.address === address)))

/** An address nobody else in this process has used, so that a test counts only its own messages. */
export const uniqueAddress = (prefix = 'mail'): string => `${uniqueName(prefix)}@example.com`

/** A password-reset-like message to `to` with a link holding a fresh token, valid for 30 minutes unless overridden. */
export function resetMessage (to: string, overrides: Partial<OutgoingMessage> = {}): { message: OutgoingMessage, token: string } {
  const token = randomBytes(24).toString('base64url')
  const link = `http://localhost:3000/reset-password?token=${token}`
  return {
    token,
    message: {
      to,
      subject: `Reset your password (${to})`,
      text: `Someone asked to reset the password of your account. To choose a new one, open ${link} within 30 minutes.`,
      html: `<p>Someone asked to reset the password of your account.</p><p><a href="${link}">Choose a new password</a></p>`,
      expiresAt: new Date(Date.now() + 30 * 60_000),
      ...overrides
    }
  }
}

/** The outbox rows addressed to `to`. */
export async function outboxRows (app: FastifyInstance, to: string): Promise<OutboxRow[]> {
  return await app.database.db.select().from(outbox).where(eq(outbox.recipient, to))
}

/** A counter of the app's registry (0 when it has no sample yet). */
export async function counted (app: FastifyInstance, name: string): Promise<number> {
  const metric = app.metrics.registry.getSingleMetric(name)
  if (metric === undefined) throw new Error(`no metric ${name}`)
  return (await metric.get()).values.reduce((sum, sample) => sum + sample.value, 0)
}
