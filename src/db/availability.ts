/**
 * Whether the database answers, as one instance sees it, and what a request is told when it does not.
 *
 * The PostgreSQL handle (db/client.ts) bounds every wait and reports here: a query that a frozen server never answers
 * marks the database down at once; a connection error makes it probe first. While down, queries fail at once (no
 * request waits behind stuck connections) and a probe on a fresh connection runs every PROBE_INTERVAL_MS; the first
 * that answers brings it back up.
 */

/** Raised for a query refused or abandoned because the database does not answer: a 503 with Retry-After, never a 500. */
export class DatabaseUnavailable extends Error {
  readonly code = DATABASE_UNAVAILABLE
  constructor (reason: string, options?: ErrorOptions) {
    super(`database unavailable: ${reason}`, options)
    this.name = 'DatabaseUnavailable'
  }
}

export const DATABASE_UNAVAILABLE = 'DATABASE_UNAVAILABLE'

// What a client is told to wait before it tries again: about one probe and one connect.
export const DATABASE_RETRY_AFTER_SECONDS = 2

// Errors that say the server is gone, refusing, shutting down or not answering, rather than that a query is wrong:
// socket errors, postgres.js's own connection errors, and SQLSTATE classes 08 (connection), 53300 (too many
// connections), 57P01-57P03 (shutdown, crash, starting up) and 57014 (statement_timeout cancelled the query).
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ENOENT',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED',
  '08000', '08001', '08003', '08004', '08006', '53300', '57P01', '57P02', '57P03', '57014'
])

// The codes above that say the connection itself is lost (worth a probe), as opposed to one slow or refused query.
const CONNECTION_LOST = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ENOENT',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_DESTROYED', '08000', '08001', '08003', '08004', '08006', '57P01', '57P02', '57P03'
])

function codes (error: unknown): string[] {
  const found: string[] = []
  // drizzle wraps the driver's error in its own (DrizzleQueryError, with the driver's as cause).
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') found.push(code)
  }
  return found
}

/** Whether an error (or its cause) means the database could not answer, whatever library raised it. */
export function isDatabaseUnavailable (error: unknown): boolean {
  return codes(error).some(code => code === DATABASE_UNAVAILABLE || UNAVAILABLE_CODES.has(code))
}

export function isConnectionLost (error: unknown): boolean {
  return codes(error).some(code => CONNECTION_LOST.has(code))
}

export interface AvailabilityEvents {
  /** Once when an outage starts (reason: what showed it), once when it ends (after how long). */
  onDown?: (reason: string) => void
  onUp?: (downForMs: number) => void
}

export interface AvailabilityOptions extends AvailabilityEvents {
  /** One bounded check on a fresh connection: resolves when the database answers. */
  probe: () => Promise<void>
  /** Runs when the outage starts, before onDown: drop the connections that may be stuck. */
  drop: () => void
  /** Runs when the database answers again, before onUp: a new pool, LISTEN again. */
  restore: () => Promise<void>
  /** Runs once the database is marked up again: re-read what was missed meanwhile. */
  restored?: () => void
  probeIntervalMs?: number
}

export class DatabaseAvailability {
  private available = true
  private probing = false
  private downSince = 0
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private readonly intervalMs: number

  constructor (private readonly options: AvailabilityOptions) {
    this.intervalMs = options.probeIntervalMs ?? 500
  }

  get up (): boolean {
    return this.available
  }

  /** A sign that the database may be gone (a lost connection, a query waiting for a connection too long): probe now. */
  suspect (reason: string): void {
    if (!this.available || this.probing || this.stopped) return
    this.probing = true
    this.options.probe().then(() => { this.probing = false }, () => {
      this.probing = false
      this.down(reason)
    })
  }

  /** Proof that the database does not answer (a query sent and never answered): down at once. */
  down (reason: string): void {
    if (!this.available || this.stopped) return
    this.available = false
    this.downSince = Date.now()
    this.options.drop()
    this.options.onDown?.(reason)
    this.schedule()
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.timer)
  }

  private schedule (): void {
    if (this.stopped) return
    this.timer = setTimeout(() => { this.retry().catch(() => { this.schedule() }) }, this.intervalMs)
    this.timer.unref()
  }

  private async retry (): Promise<void> {
    await this.options.probe()
    if (this.stopped) return
    await this.options.restore()
    this.available = true
    this.options.onUp?.(Date.now() - this.downSince)
    this.options.restored?.()
  }
}
