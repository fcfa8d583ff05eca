import { hash, verify, Algorithm } from '@node-rs/argon2'

export interface Argon2Params {
  memoryCost: number
  timeCost: number
  parallelism: number
}

export interface PasswordHasher {
  hash: (password: string) => Promise<string>
  /** Verifies against the stored hash, or against a dummy hash when there is none, so both take the same time. */
  verify: (storedHash: string | undefined, password: string) => Promise<boolean>
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

export async function createPasswordHasher (params: Argon2Params, observe: HashTimer = () => {}): Promise<PasswordHasher> {
  const options = { algorithm: Algorithm.Argon2id, ...params }
  async function timed<T> (operation: 'hash' | 'verify', work: () => Promise<T>): Promise<T> {
    const started = performance.now()
    try {
      return await work()
    } finally {
      observe(operation, (performance.now() - started) / 1000)
    }
  }
  // Made once with the live parameters: unknown users are checked against it, costing what a real check costs.
  const dummyHash = await hash('dummy password for unknown users', options)

  return {
    hash: async (password) => await timed('hash', async () => await hash(password, options)),
    verify: async (storedHash, password) => await timed('verify', async () => {
      if (storedHash === undefined) {
        await verify(dummyHash, password)
        return false
      }
      try {
        return await verify(storedHash, password)
      } catch {
        return false
      }
    }),
    needsRehash: (storedHash) => {
      const current = parsePhc(storedHash)
      return current === undefined ||
        current.memoryCost !== params.memoryCost ||
        current.timeCost !== params.timeCost ||
        current.parallelism !== params.parallelism
    }
  }
}
