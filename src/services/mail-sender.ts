import { eq, inArray, lte, sql } from '../db/orm.js'
import type { Database } from '../db/client.js'
import { outbox } from '../db/schema.js'

export interface MailMessage {
  from: string
  to: string
  subject: string
  text: string
  html: string
}

/** What hands a message on: SMTP, or the log in development. Resolves once the message is accepted, else throws. */
export interface MailTransport {
  send: (message: MailMessage, signal: AbortSignal) => Promise<void>
  close: () => void
}

export interface SenderTiming {
  /** How often the outbox is read when nothing woke the sender. */
  pollIntervalMs: number
  /** How long a claimed row is this instance's: no other instance takes it before then. */
  leaseMs: number
  /** The first retry waits this long, each next one twice as long, up to retryMaxMs. */
  retryBaseMs: number
  retryMaxMs: number
  /** The most one send may take, its SMTP timeouts aside: shorter than the lease, so that no row is sent twice. */
  sendTimeoutMs: number
  /** How long stop() lets a send in flight finish before it cuts it off (it is then retried, here or elsewhere). */
  stopTimeoutMs: number
  batchSize: number
}

export const SENDER_TIMING: SenderTiming = {
  pollIntervalMs: 1000,
  leaseMs: 60_000,
  retryBaseMs: 1000,
  retryMaxMs: 5 * 60_000,
  sendTimeoutMs: 30_000,
  stopTimeoutMs: 5000,
  batchSize: 10
}

// After a send is cut off at stop, what is left is one short update.
const ABORT_SETTLE_MS = 1000

export interface MailOutcome {
  id: string
  to: string
  /** Failed sends so far, this one included when it failed. */
  attempts: number
}

export interface MailSenderEvents {
  sent: (mail: MailOutcome) => void
  retried: (mail: MailOutcome & { retryInMs: number, error: string }) => void
  /** Dropped unsent: it expired. */
  failed: (mail: MailOutcome) => void
  /** The first database error of a streak (later ones stay quiet until a claim succeeds again). */
  databaseError: (error: string) => void
  databaseRecovered: () => void
}

export interface MailSenderOptions {
  db: Database
  transport: MailTransport
  from: string
  on: MailSenderEvents
  timing?: Partial<SenderTiming>
}

/** Thrown by enqueue when no email can be sent (production without SMTP_URL). */
export class MailUnavailableError extends Error {
  readonly code = 'email_unavailable'
  constructor () {
    super('Email is not configured (SMTP_URL is unset)')
    this.name = 'MailUnavailableError'
  }
}

/** The wait before the next try after `attempts` failed ones: 1 s, 2 s, 4 s ... up to the cap (with the defaults). */
export function retryDelayMs (attempts: number, timing: Pick<SenderTiming, 'retryBaseMs' | 'retryMaxMs'> = SENDER_TIMING): number {
  return Math.min(timing.retryBaseMs * 2 ** Math.min(Math.max(attempts - 1, 0), 30), timing.retryMaxMs)
}

/** An error as one short line: no line breaks to forge log lines with, no credentials of a URL. */
export function describeError (error: unknown): string {
  const { code, message, cause } = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown, message?: unknown, cause?: { message?: unknown } }
  const text = typeof message === 'string' ? message : String(error)
  const prefix = typeof code === 'string' && !text.includes(code) ? `${code}: ` : ''
  // An aborted send says only that it was aborted; its cause says why (a stop, the send deadline).
  const why = typeof cause?.message === 'string' && !text.includes(cause.message) ? ` (${cause.message})` : ''
  return (prefix + text + why)
    .replace(/\s+/g, ' ')
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, '$1[REDACTED]@')
    .trim()
    .slice(0, 200)
}

const afterMs = (ms: number) => sql`now() + (${Math.round(ms)}::integer * interval '1 millisecond')`

interface Claimed {
  id: string
  recipient: string
  subject: string
  textBody: string
  htmlBody: string
  attempts: number
  expired: boolean
}

/**
 * Sends what the outbox holds, in the background. Any number of instances may run one on the same database: each
 * row is claimed by one of them for a lease, sent outside any transaction, then deleted (its body carries a
 * single-use link: it is not kept) or given a later try with exponential backoff.
 */
export class MailSender {
  private readonly timing: SenderTiming
  private running: Promise<void> | undefined
  private stopping = false
  private woken = false
  private wakeUp: (() => void) | undefined
  private inFlight: AbortController | undefined
  private databaseFailing = false
  // Sent, but the delete failed: deleted first thing next tick, well before their lease runs out and they go again.
  private readonly sentNotDeleted = new Set<string>()

  constructor (private readonly options: MailSenderOptions) {
    this.timing = { ...SENDER_TIMING, ...options.timing }
  }

  start (): void {
    this.running ??= this.loop()
  }

  /** Reads the outbox now rather than at the next poll (after this instance committed a message). */
  wake (): void {
    this.woken = true
    this.wakeUp?.()
  }

  /** Stops the loop: a send in flight gets stopTimeoutMs to finish, then it is cut off and left for a retry. */
  async stop (): Promise<void> {
    this.stopping = true
    this.wakeUp?.()
    const running = this.running
    if (running !== undefined && !await settlesWithin(running, this.timing.stopTimeoutMs)) {
      this.inFlight?.abort(new Error('mail sender stopped'))
      await settlesWithin(running, ABORT_SETTLE_MS)
    }
    this.options.transport.close()
  }

  private async loop (): Promise<void> {
    while (!this.stopping) {
      this.woken = false
      // tick() handles its errors; this catch is for a logger that throws, which must not become an unhandled rejection.
      const more = await this.tick().catch(() => false)
      if (!more && !this.woken && !this.stopping) await this.pause()
    }
  }

  /** One claim and its sends. Never throws; answers whether more may be due right away. */
  private async tick (): Promise<boolean> {
    try {
      await this.deleteSent()
      const rows = await this.claim()
      if (this.databaseFailing) {
        this.databaseFailing = false
        this.options.on.databaseRecovered()
      }
      for (const [i, row] of rows.entries()) {
        if (this.stopping) {
          await this.release(rows.slice(i))
          return false
        }
        await this.deliver(row)
      }
      return rows.length === this.timing.batchSize
    } catch (error) {
      if (!this.databaseFailing) {
        this.databaseFailing = true
        // Drizzle wraps the driver's error in one whose message holds the query and its parameters.
        this.options.on.databaseError(describeError((error as { cause?: unknown }).cause ?? error))
      }
      return false
    }
  }

  // One statement, so one short transaction: the due rows are locked (skipping those another instance holds right
  // now), moved a lease ahead, and committed, before anything is sent.
  private async claim (): Promise<Claimed[]> {
    const { db } = this.options
    const due = db.select({ id: outbox.id }).from(outbox)
      .where(lte(outbox.nextAttemptAt, sql`now()`))
      .orderBy(outbox.nextAttemptAt)
      .limit(this.timing.batchSize)
      .for('update', { skipLocked: true })
    return await db.update(outbox)
      .set({ nextAttemptAt: afterMs(this.timing.leaseMs) })
      .where(inArray(outbox.id, due))
      .returning({
        id: outbox.id,
        recipient: outbox.recipient,
        subject: outbox.subject,
        textBody: outbox.textBody,
        htmlBody: outbox.htmlBody,
        attempts: outbox.attempts,
        expired: sql<boolean>`${outbox.expiresAt} <= now()`
      })
  }

  private async deliver (row: Claimed): Promise<void> {
    const { db, transport, from, on } = this.options
    if (row.expired) {
      await db.delete(outbox).where(eq(outbox.id, row.id))
      on.failed({ id: row.id, to: row.recipient, attempts: row.attempts })
      return
    }
    const controller = new AbortController()
    const timer = setTimeout(() => { controller.abort(new Error(`send took over ${this.timing.sendTimeoutMs} ms`)) }, this.timing.sendTimeoutMs)
    this.inFlight = controller
    try {
      await transport.send({ from, to: row.recipient, subject: row.subject, text: row.textBody, html: row.htmlBody }, controller.signal)
    } catch (error) {
      const attempts = row.attempts + 1
      const retryInMs = retryDelayMs(attempts, this.timing)
      const message = describeError(error)
      await db.update(outbox).set({ attempts, nextAttemptAt: afterMs(retryInMs), lastError: message }).where(eq(outbox.id, row.id))
      on.retried({ id: row.id, to: row.recipient, attempts, retryInMs, error: message })
      return
    } finally {
      clearTimeout(timer)
      this.inFlight = undefined
    }
    on.sent({ id: row.id, to: row.recipient, attempts: row.attempts })
    this.sentNotDeleted.add(row.id)
    await this.deleteSent()
  }

  private async deleteSent (): Promise<void> {
    if (this.sentNotDeleted.size === 0) return
    const ids = [...this.sentNotDeleted]
    await this.options.db.delete(outbox).where(inArray(outbox.id, ids))
    for (const id of ids) this.sentNotDeleted.delete(id)
  }

  /** Claimed rows this instance will not send after all (it is stopping): due again at once, for another instance. */
  private async release (rows: Claimed[]): Promise<void> {
    await this.options.db.update(outbox).set({ nextAttemptAt: sql`now()` }).where(inArray(outbox.id, rows.map(r => r.id)))
  }

  private async pause (): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.wakeUp = undefined
        resolve()
      }
      const timer = setTimeout(done, this.timing.pollIntervalMs)
      // The sender alone never keeps the process alive.
      timer.unref()
      this.wakeUp = done
    })
  }
}

async function settlesWithin (promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<false>(resolve => { timer = setTimeout(() => resolve(false), ms) })
  try {
    return await Promise.race([promise.then(() => true, () => true), timedOut])
  } finally {
    clearTimeout(timer)
  }
}
