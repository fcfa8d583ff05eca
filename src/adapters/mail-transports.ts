import type { FastifyBaseLogger } from 'fastify'
import { createTransport } from 'nodemailer'
import { ConfigError } from '../config.js'
import { describeError, type MailTransport } from '../services/mail-sender.js'

export interface SmtpTimeouts {
  connectionTimeout: number
  greetingTimeout: number
  socketTimeout: number
}

const decoded = (text: string): string => {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/** The credentials of an SMTP URL, as written and decoded, to be kept out of error messages. */
function credentialsOf (url: URL): string[] {
  const { username, password } = url
  const values = [password, decoded(password)]
  // A very short user name would blank out ordinary letters; it is no secret on its own.
  if (username.length >= 3) values.push(username, decoded(username))
  return [...new Set(values.filter(v => v !== ''))].sort((a, b) => b.length - a.length)
}

const OVERRIDES_REFUSED = ['logger', 'debug', 'transactionLog', 'connectionTimeout', 'greetingTimeout', 'socketTimeout', 'dnsTimeout']

/** SMTP_URL through nodemailer, one connection per message, every network wait bounded. */
export function smtpTransport (url: string, timeouts: SmtpTimeouts): MailTransport {
  let secrets: string[]
  let transporter: ReturnType<typeof createTransport>
  try {
    const parsed = new URL(url)
    secrets = credentialsOf(parsed)
    // Query parameters of the URL become options that win over ours: none may turn on nodemailer's own logging
    // (it would write AUTH exchanges and message bodies, links included) or lift a timeout.
    for (const key of OVERRIDES_REFUSED) parsed.searchParams.delete(key)
    // The URL inside the options object: createTransport's second argument holds message defaults, not transport options.
    transporter = createTransport({ url: parsed.toString(), ...timeouts, disableFileAccess: true, disableUrlAccess: true })
  } catch {
    // Not the parser's error: it quotes the URL, credentials and all.
    throw new ConfigError(['SMTP_URL: is not a valid URL'])
  }
  return {
    async send (message, signal) {
      try {
        await transporter.sendMail({ ...message, signal })
      } catch (error) {
        let text = describeError(error)
        for (const secret of secrets) text = text.split(secret).join('[REDACTED]')
        throw new Error(text)
      }
    },
    close () { transporter.close() }
  }
}

/**
 * Development without SMTP_URL: each message goes to the log, its link included, so that reset and verification
 * work without a mail server. Never chosen in production, where the link would hand the account to log readers.
 */
export function logTransport (log: FastifyBaseLogger): MailTransport {
  return {
    async send (message) {
      log.info({ mail: { to: message.to, subject: message.subject, text: message.text } }, 'email not sent (no SMTP_URL): written here instead')
    },
    close () {}
  }
}
