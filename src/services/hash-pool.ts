import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import type { Options } from '@node-rs/argon2'
import { BCRYPT_HASH, HASH_COST_LIMITS, PBKDF2_SHA256_HASH } from './hash-formats.js'

export interface HashJob {
  id: number
  operation: 'hash' | 'verify'
  password: string
  storedHash?: string
  options: Options
}

export interface HashResult {
  id: number
  value?: string | boolean
  error?: string
  seconds: number
}

// The worker's code, evaluated as a script so that it runs the same from src/ under tsx and from dist/. It renices
// its own thread (Linux: /proc/thread-self names it, and setpriority on a thread id applies to that thread alone;
// elsewhere it stays at normal priority), then hashes and verifies synchronously, one job at a time.
// A verify routes by the stored hash's prefix: argon2 (the service's own), or bcrypt and passlib's pbkdf2-sha256
// (users imported from other apps, rehashed to argon2id at their first login); any other hash is an error.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const { pbkdf2Sync, timingSafeEqual } = require('node:crypto')
const { readlinkSync } = require('node:fs')
const { setPriority } = require('node:os')
const argon2 = require(workerData.argon2)
const bcrypt = require(workerData.bcrypt)
const { limits } = workerData
const BCRYPT = ${BCRYPT_HASH}
const PBKDF2_SHA256 = ${PBKDF2_SHA256_HASH}
try { setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), workerData.niceness) } catch {}
const ab64 = (text) => Buffer.from(text.replaceAll('.', '+'), 'base64')
function verify (storedHash, password) {
  if (storedHash.startsWith('$argon2')) return argon2.verifySync(storedHash, password)
  let match = BCRYPT.exec(storedHash)
  if (match !== null) {
    if (Number(match[1]) > limits.bcryptCost) throw new Error('bcrypt cost above the limit')
    return bcrypt.compareSync(password, storedHash)
  }
  match = PBKDF2_SHA256.exec(storedHash)
  if (match !== null) {
    const rounds = Number(match[1])
    if (rounds > limits.pbkdf2Rounds) throw new Error('pbkdf2-sha256 rounds above the limit')
    const derived = pbkdf2Sync(password, ab64(match[2]), rounds, 32, 'sha256')
    return timingSafeEqual(derived, ab64(match[3]))
  }
  throw new Error('unsupported password hash format')
}
parentPort.on('message', (job) => {
  const started = performance.now()
  let reply
  try {
    const value = job.operation === 'hash' ? argon2.hashSync(job.password, job.options) : verify(job.storedHash, job.password)
    reply = { id: job.id, value, seconds: (performance.now() - started) / 1000 }
  } catch (error) {
    reply = { id: job.id, error: String(error && error.message), seconds: (performance.now() - started) / 1000 }
  }
  parentPort.postMessage(reply)
})
`
const resolve = createRequire(import.meta.url).resolve
const ARGON2 = resolve('@node-rs/argon2')
const BCRYPT = resolve('bcryptjs')

/** The queue is full: the caller answers 503 with Retry-After rather than make every login wait longer. */
export class HashPoolBusy extends Error {
  readonly code = 'HASH_POOL_BUSY'
  constructor () {
    super('Too many password checks under way')
    this.name = 'HashPoolBusy'
  }
}

interface Pending {
  job: HashJob
  resolve: (result: HashResult) => void
  reject: (error: Error) => void
  /** While the job waits in the queue: drops it when its signal aborts. */
  onAbort?: () => void
  signal?: AbortSignal
}

/**
 * argon2id, and the verification of imported hashes, on a fixed set of worker threads, one per core by default, each
 * reniced (10): password hashing uses every core when nothing else wants them, and yields to the event loop, so token
 * checks stay fast during a login storm.
 * Jobs beyond the pool's size wait in a queue instead of competing for the cores and the memory; at most `maxQueue`
 * of them (PASSWORD_HASH_QUEUE_MAX): past that a job is refused at once (HashPoolBusy), so that a flood of logins
 * from many addresses cannot make every login wait without bound.
 */
export class HashPool {
  private readonly idle: Worker[] = []
  private readonly busy = new Map<Worker, Pending>()
  private readonly queue: Pending[] = []
  private nextId = 0
  private closed = false

  constructor (size: number, niceness = 10, private readonly maxQueue = Number.POSITIVE_INFINITY) {
    for (let i = 0; i < size; i++) this.spawn(niceness)
  }

  private spawn (niceness: number): void {
    // The worker's own JavaScript holds a password and a hash at a time: a small heap is plenty (argon2's memory is
    // allocated natively, outside these limits).
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { niceness, argon2: ARGON2, bcrypt: BCRYPT, limits: HASH_COST_LIMITS },
      resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 16 }
    })
    worker.unref()
    worker.on('message', (result: HashResult) => {
      const pending = this.busy.get(worker)
      this.busy.delete(worker)
      pending?.resolve(result)
      this.release(worker)
    })
    worker.on('error', (error) => {
      const pending = this.busy.get(worker)
      this.busy.delete(worker)
      pending?.reject(error)
      // A crashed worker is replaced, so the pool keeps its size.
      if (!this.closed) this.spawn(niceness)
    })
    this.release(worker)
  }

  /** Gives a free worker the next queued job, or puts it with the idle ones. */
  private release (worker: Worker): void {
    const next = this.queue.shift()
    if (next === undefined) {
      this.idle.push(worker)
      return
    }
    if (next.onAbort !== undefined) next.signal?.removeEventListener('abort', next.onAbort)
    this.busy.set(worker, next)
    worker.postMessage(next.job)
  }

  /**
   * Runs the job on the next free worker. While it waits for one, an abort of `signal` (its client has gone) takes it
   * out of the queue and rejects it with the signal's reason, unhashed; a job already running finishes.
   */
  async run (job: Omit<HashJob, 'id'>, signal?: AbortSignal): Promise<HashResult> {
    if (this.closed) throw new Error('hash pool is closed')
    signal?.throwIfAborted()
    const worker = this.idle.pop()
    if (worker === undefined && this.queue.length >= this.maxQueue) throw new HashPoolBusy()
    return await new Promise<HashResult>((resolve, reject) => {
      const pending: Pending = { job: { ...job, id: this.nextId++ }, resolve, reject }
      this.queue.push(pending)
      if (worker !== undefined) {
        this.release(worker)
      } else if (signal !== undefined) {
        // Only a job that has to wait listens: with a worker free, the hot path adds nothing.
        pending.signal = signal
        pending.onAbort = () => {
          const index = this.queue.indexOf(pending)
          if (index === -1) return
          this.queue.splice(index, 1)
          reject(signal.reason instanceof Error ? signal.reason : new Error('aborted', { cause: signal.reason }))
        }
        signal.addEventListener('abort', pending.onAbort, { once: true })
      }
    })
  }

  async close (): Promise<void> {
    this.closed = true
    for (const pending of [...this.queue.splice(0), ...this.busy.values()]) pending.reject(new Error('hash pool is closed'))
    await Promise.all([...this.idle, ...this.busy.keys()].map(async worker => await worker.terminate()))
  }
}
