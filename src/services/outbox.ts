import { outbox } from '../db/schema.js'
import type { Database } from '../db/client.js'

/** One email, written to the outbox in the caller's transaction and sent later by the mail sender. */
export interface OutgoingMessage {
  to: string
  subject: string
  text: string
  html: string
  /** Past this the message is dropped unsent (the link in it would be dead). */
  expiresAt: Date
}

/** Writes the message to the outbox; `db` may be a transaction, so that the message and what it carries commit together. */
export async function enqueue (db: Pick<Database, 'insert'>, message: OutgoingMessage): Promise<void> {
  await db.insert(outbox).values({
    recipient: message.to,
    subject: message.subject,
    textBody: message.text,
    htmlBody: message.html,
    expiresAt: message.expiresAt
  })
}
