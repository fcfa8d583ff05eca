export type EndedListener = (sessionId: string, endedAt: Date) => void

/**
 * The sessions that ended while access tokens issued for them may still be unexpired: an in-process set, so that
 * checking a token costs no database query. Kept current by SessionSync (services/session-sync.ts: NOTIFY plus a bounded re-read).
 */
export class EndedSessions {
  private readonly forgetAt = new Map<string, number>()
  private readonly listeners = new Set<EndedListener>()
  private confirmedAt = Date.now()

  /**
   * @param retainMs how long after its end a session must stay listed: the access token lifetime plus skew.
   * @param staleAfterMs how long the set is trusted after the last successful re-read (SESSION_SYNC_MAX_STALENESS_SECONDS).
   */
  constructor (private readonly retainMs: number, private readonly staleAfterMs = Number.POSITIVE_INFINITY) {}

  /** The set was just read in full from the database: it holds every session ended anywhere until now. */
  confirm (): void {
    this.confirmedAt = Date.now()
  }

  /** Whether the set is recent enough to decide on: false once the re-reads have failed for staleAfterMs. */
  get current (): boolean {
    return Date.now() - this.confirmedAt <= this.staleAfterMs
  }

  has (sessionId: string): boolean {
    return this.forgetAt.has(sessionId)
  }

  /** Lists a session as ended; true when it was not listed yet (its listeners are told, the feed sends it on). */
  add (sessionId: string, endedAt: Date = new Date()): boolean {
    const until = endedAt.getTime() + this.retainMs
    if (until <= Date.now()) return false
    const isNew = !this.forgetAt.has(sessionId)
    this.forgetAt.set(sessionId, until)
    if (isNew) for (const listener of this.listeners) listener(sessionId, endedAt)
    return isNew
  }

  /** Calls `listener` (which must not throw) for every session newly listed; answers the function that stops it. */
  onEnded (listener: EndedListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  prune (now = Date.now()): void {
    for (const [id, until] of this.forgetAt) if (until <= now) this.forgetAt.delete(id)
  }

  get size (): number {
    return this.forgetAt.size
  }
}
