export type EndedListener = (sessionId: string, endedAt: Date) => void

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const INITIAL_SLOTS = 1024
// Slot states in `until`: 0 never used (a probe stops there), -1 a removed entry (a probe goes on past it).
const EMPTY = 0
const REMOVED = -1

/**
 * The sessions that ended while access tokens issued for them may still be unexpired: an in-process set, so that
 * checking a token costs no database query. Kept current by SessionSync (services/session-sync.ts: NOTIFY plus a bounded re-read).
 *
 * Stored compactly: a session id (a UUID) is 16 bytes in an open-addressing table of typed arrays, with the time it may
 * be forgotten beside it; 100,000 ended sessions take 6 MB outside the JavaScript heap, where a Map of their id strings
 * took about 10 MB of it and its garbage (docs/performance.md). An id that is not a UUID (none the service issues) is
 * kept in a Map.
 */
export class EndedSessions {
  private keys = new Uint32Array(INITIAL_SLOTS * 4)
  private until = new Float64Array(INITIAL_SLOTS)
  /** Live entries in the table. */
  private live = 0
  /** Live and removed slots: probes end only at a never-used one, so both count towards the load. */
  private used = 0
  private readonly other = new Map<string, number>()
  private readonly listeners = new Set<EndedListener>()
  private confirmedAt = Date.now()
  private readonly words = new Uint32Array(4)

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
    if (!parseUuid(sessionId, this.words)) return this.other.has(sessionId)
    return this.find(this.words, 0) >= 0
  }

  /** Lists a session as ended; true when it was not listed yet (its listeners are told, the feed sends it on). */
  add (sessionId: string, endedAt: Date = new Date()): boolean {
    const until = endedAt.getTime() + this.retainMs
    if (until <= Date.now()) return false
    let isNew: boolean
    if (parseUuid(sessionId, this.words)) {
      isNew = this.put(this.words, 0, until)
    } else {
      isNew = !this.other.has(sessionId)
      this.other.set(sessionId, until)
    }
    if (isNew) for (const listener of this.listeners) listener(sessionId, endedAt)
    return isNew
  }

  /**
   * Lists many at once from their packed form (16 bytes of id, then the end as 8 bytes of big-endian epoch
   * milliseconds, per session; what `uuid_send(id) || int8send(ms)` gives): no string is made for an id unless a
   * listener is told of it. Answers the newest end among them (epoch ms; 0 if none).
   */
  addPacked (packed: Uint8Array): number {
    const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength)
    const now = Date.now()
    let newest = 0
    // Room for all of them first: one rebuild, not one per doubling.
    const needed = 2 * (this.used + packed.byteLength / 24)
    if (needed > this.until.length) this.rebuild(2 ** Math.ceil(Math.log2(needed)))
    for (let offset = 0; offset + 24 <= packed.byteLength; offset += 24) {
      const endedAt = Number(view.getBigInt64(offset + 16))
      if (endedAt > newest) newest = endedAt
      const until = endedAt + this.retainMs
      if (until <= now) continue
      for (let w = 0; w < 4; w++) this.words[w] = view.getUint32(offset + 4 * w)
      if (this.put(this.words, 0, until) && this.listeners.size > 0) {
        const id = formatUuid(this.words)
        for (const listener of this.listeners) listener(id, new Date(endedAt))
      }
    }
    return newest
  }

  /** Calls `listener` (which must not throw) for every session newly listed; answers the function that stops it. */
  onEnded (listener: EndedListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  prune (now = Date.now()): void {
    for (let slot = 0; slot < this.until.length; slot++) {
      const until = this.until[slot]
      if (until > 0 && until <= now) {
        this.until[slot] = REMOVED
        this.live--
      }
    }
    for (const [id, until] of this.other) if (until <= now) this.other.delete(id)
    // Mostly removed slots: the table is rebuilt, so that probes stay short.
    if (this.used > 4 * this.live + INITIAL_SLOTS) this.rebuild(this.until.length)
  }

  get size (): number {
    return this.live + this.other.size
  }

  /** The slot holding this id, or -1. */
  private find (words: Uint32Array, from: number): number {
    const mask = this.until.length - 1
    for (let slot = hash(words, from) & mask; ; slot = (slot + 1) & mask) {
      const until = this.until[slot]
      if (until === EMPTY) return -1
      if (until !== REMOVED && this.sameKey(slot, words, from)) return slot
    }
  }

  /** Sets the id's time (the later of the old and new); true when it was not listed. */
  private put (words: Uint32Array, from: number, until: number): boolean {
    const found = this.find(words, from)
    if (found >= 0) {
      if (until > this.until[found]) this.until[found] = until
      return false
    }
    // At most half full, counting removed slots.
    if (2 * (this.used + 1) > this.until.length) this.rebuild(2 * (this.live + 1) > this.until.length / 2 ? this.until.length * 2 : this.until.length)
    const mask = this.until.length - 1
    let slot = hash(words, from) & mask
    while (this.until[slot] > 0) slot = (slot + 1) & mask
    if (this.until[slot] === EMPTY) this.used++
    this.keys.set(words.subarray(from, from + 4), slot * 4)
    this.until[slot] = until
    this.live++
    return true
  }

  private sameKey (slot: number, words: Uint32Array, from: number): boolean {
    const at = slot * 4
    return this.keys[at] === words[from] && this.keys[at + 1] === words[from + 1] && this.keys[at + 2] === words[from + 2] && this.keys[at + 3] === words[from + 3]
  }

  /** The live entries moved into a table of `slots` slots (a power of two). */
  private rebuild (slots: number): void {
    const keys = this.keys
    const until = this.until
    this.keys = new Uint32Array(slots * 4)
    this.until = new Float64Array(slots)
    this.live = 0
    this.used = 0
    for (let slot = 0; slot < until.length; slot++) {
      if (until[slot] > 0) this.put(keys, slot * 4, until[slot])
    }
  }
}

/** The UUID's 128 bits as four 32-bit words into `words`; false (words untouched) when it is not a UUID. */
function parseUuid (id: string, words: Uint32Array): boolean {
  if (id.length !== 36 || !UUID.test(id)) return false
  words[0] = parseInt(id.slice(0, 8), 16)
  words[1] = parseInt(id.slice(9, 13) + id.slice(14, 18), 16)
  words[2] = parseInt(id.slice(19, 23) + id.slice(24, 28), 16)
  words[3] = parseInt(id.slice(28, 36), 16)
  return true
}

function formatUuid (words: Uint32Array): string {
  const hex = Array.from(words, w => w.toString(16).padStart(8, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

// Session ids are random (gen_random_uuid, randomUUID): their words mixed are an even spread already.
function hash (words: Uint32Array, from: number): number {
  return (Math.imul(words[from] ^ words[from + 3], 0x9e3779b1) ^ words[from + 1] ^ words[from + 2]) >>> 0
}
