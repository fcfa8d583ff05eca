import { Algorithm } from '@node-rs/argon2'
import { HashPoolBusy, type HashPool } from './hash-pool.js'

export interface Argon2Params {
  memoryCost: number
  timeCost: number
  parallelism: number
}

export interface PasswordHasher {
  hash: (password: string) => Promise<string>
  /**
   * Verifies against the stored hash, or against a dummy hash when there is none, so both take the same time.
   * An abort of `signal` before the check starts rejects with its reason (the client has gone: nothing is hashed).
   */
  verify: (storedHash: string | undefined, password: string, signal?: AbortSignal) => Promise<boolean>
  needsRehash: (storedHash: string) => boolean
}

const PHC = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/

/** Reads the parameters of an argon2id PHC string; undefined for any other algorithm or version. */
export function parsePhc (storedHash: string): Argon2Params | undefined {
  const match = PHC.exec(storedHash)
  if (match === null) return undefined
  return { memoryCost: Number(match[1]), timeCost: Number(match[2]), parallelism: Number(match[3]) }
}

/** Called with the seconds each hash or verify took (the metrics histogram). */
export type HashTimer = (operation: 'hash' | 'verify', seconds: number) => void

type Argon2 = (operation: 'hash' | 'verify', password: string, storedHash?: string, signal?: AbortSignal) => Promise<string | boolean>

/** argon2id with the given parameters, on the worker threads of `pool`. */
export async function createPasswordHasher (params: Argon2Params, pool: HashPool, observe: HashTimer = () => {}): Promise<PasswordHasher> {
  const options = { algorithm: Algorithm.Argon2id, ...params }
  let timer: HashTimer = () => {}
  const argon2: Argon2 = async (operation, password, storedHash, signal) => {
    const result = await pool.run({ operation, password, storedHash, options }, signal)
    timer(operation, result.seconds)
    if (result.error !== undefined || result.value === undefined) throw new Error(result.error ?? 'no result')
    return result.value
  }

  // Made once with the live parameters: unknown users are checked against it, costing what a real check costs.
  const dummyHash = await argon2('hash', 'dummy password for unknown users') as string
  // Timed from here on: the metrics count the hashes requests cause, not this one.
  timer = observe

  return {
    hash: async (password) => await argon2('hash', password) as string,
    verify: async (storedHash, password, signal) => {
      if (storedHash === undefined) {
        await argon2('verify', password, dummyHash, signal)
        return false
      }
      try {
        return await argon2('verify', password, storedHash, signal) as boolean
      } catch (error) {
        // A full queue, or a client gone, is not a wrong password: it goes up, to be answered 503 (or to nobody).
        if (error instanceof HashPoolBusy || signal?.aborted === true) throw error
        return false
      }
    },
    needsRehash: (storedHash) => {
      const current = parsePhc(storedHash)
      return current === undefined ||
        current.memoryCost !== params.memoryCost ||
        current.timeCost !== params.timeCost ||
        current.parallelism !== params.parallelism
    }
  }
}
