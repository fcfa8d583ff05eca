import { ConfigSchema } from '../config.js'

// The password hashes the service can verify: its own argon2id, and what users imported from other apps bring along
// (passlib and the FastAPI tutorials: bcrypt, pbkdf2-sha256; argon2 from anywhere). The hash worker routes by these.
export const ARGON2_HASH = /^\$argon2(?:id|i|d)\$(?:v=(?:16|19)\$)?m=(\d{1,10}),t=(\d{1,10}),p=(\d{1,3})\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{6,}$/
export const BCRYPT_HASH = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/
// passlib's pbkdf2_sha256: rounds, salt and checksum, both in its "ab64" base64 ('.' for '+', no padding).
export const PBKDF2_SHA256_HASH = /^\$pbkdf2-sha256\$([1-9]\d{0,9})\$([./A-Za-z0-9]*)\$([./A-Za-z0-9]{43})$/

/**
 * The most work one stored hash may ask of a hash worker per login attempt: a file of imported users must not be
 * able to make every login with a known username cost seconds. argon2's bounds are the service's own settings' bounds.
 */
export const HASH_COST_LIMITS = {
  bcryptCost: 15,
  pbkdf2Rounds: 2_000_000,
  argon2MemoryKib: ConfigSchema.properties.ARGON2_MEMORY_KIB.maximum as number,
  argon2TimeCost: ConfigSchema.properties.ARGON2_TIME_COST.maximum as number,
  argon2Parallelism: ConfigSchema.properties.ARGON2_PARALLELISM.maximum as number
}

/** Why a stored hash cannot be taken as it is (unknown format, malformed, or too costly to verify); undefined if it can. */
export function storedHashProblem (storedHash: string): string | undefined {
  const limits = HASH_COST_LIMITS
  if (storedHash.length > 512) return 'longer than any supported hash'
  if (storedHash.startsWith('$argon2')) {
    const match = ARGON2_HASH.exec(storedHash)
    if (match === null) return 'malformed argon2 hash'
    const [memory, time, parallelism] = match.slice(1).map(Number)
    if (memory > limits.argon2MemoryKib) return `argon2 memory m=${memory} is above ${limits.argon2MemoryKib}`
    if (time > limits.argon2TimeCost) return `argon2 time cost t=${time} is above ${limits.argon2TimeCost}`
    if (parallelism > limits.argon2Parallelism) return `argon2 parallelism p=${parallelism} is above ${limits.argon2Parallelism}`
    return undefined
  }
  if (/^\$2[a-z]?\$/.test(storedHash)) {
    const match = BCRYPT_HASH.exec(storedHash)
    if (match === null) return 'malformed bcrypt hash (expected $2a$, $2b$ or $2y$, a two-digit cost, 53 characters)'
    const cost = Number(match[1])
    if (cost < 4) return `bcrypt cost ${cost} is below 4`
    if (cost > limits.bcryptCost) return `bcrypt cost ${cost} is above ${limits.bcryptCost}`
    return undefined
  }
  if (storedHash.startsWith('$pbkdf2-sha256$')) {
    const match = PBKDF2_SHA256_HASH.exec(storedHash)
    // A base64 text of 4n+1 characters decodes to no whole number of bytes.
    if (match === null || match[2].length % 4 === 1) return 'malformed pbkdf2-sha256 hash (expected passlib\'s $pbkdf2-sha256$ROUNDS$SALT$CHECKSUM)'
    const rounds = Number(match[1])
    if (rounds > limits.pbkdf2Rounds) return `pbkdf2-sha256 rounds ${rounds} are above ${limits.pbkdf2Rounds}`
    return undefined
  }
  return 'not a bcrypt, pbkdf2-sha256 or argon2 hash'
}
