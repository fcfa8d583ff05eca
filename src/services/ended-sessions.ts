/**
 * The sessions that ended while access tokens issued for them may still be unexpired: an in-process set, so that
 * checking a token costs no database query. Kept current by SessionSync (services/session-sync.ts: NOTIFY plus a bounded re-read).
 */
export class EndedSessions {
  private readonly forgetAt = new Map<string, number>()

  /** @param retainMs how long after its end a session must stay listed: the access token lifetime plus skew. */
  constructor (private readonly retainMs: number) {}

  has (sessionId: string): boolean {
    return this.forgetAt.has(sessionId)
  }

  add (sessionId: string, endedAt: Date = new Date()): void {
    const until = endedAt.getTime() + this.retainMs
    if (until > Date.now()) this.forgetAt.set(sessionId, until)
  }

  prune (now = Date.now()): void {
    for (const [id, until] of this.forgetAt) if (until <= now) this.forgetAt.delete(id)
  }

  get size (): number {
    return this.forgetAt.size
  }
}
