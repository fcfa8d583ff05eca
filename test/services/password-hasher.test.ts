import { pbkdf2Sync, randomBytes } from 'node:crypto'
import tap, { test } from 'tap'
import { Algorithm, hashSync as argon2Hash } from '@node-rs/argon2'
import { HASH_COST_LIMITS } from '../../src/services/hash-formats.js'
import { HashPool } from '../../src/services/hash-pool.js'
import { createPasswordHasher, parsePhc } from '../../src/services/password-hasher.js'
import { bcryptHash } from '../helper.js'

// The hasher runs where the service runs it: on the worker-thread pool.
const pool = new HashPool(2)
tap.teardown(async () => { await pool.close() })

const cheap = { memoryCost: 1024, timeCost: 1, parallelism: 1 }

test('hash: when a password is hashed, then the result is an argon2id PHC string with the configured parameters', async (t) => {
  const hasher = await createPasswordHasher(cheap, pool)
  const hash = await hasher.hash('pässwörd 🔑')
  t.match(hash, /^\$argon2id\$v=19\$m=1024,t=1,p=1\$/)
  t.same(parsePhc(hash), cheap)
})

test('verify: when the password matches exactly, then true; any other string, then false', async (t) => {
  const hasher = await createPasswordHasher(cheap, pool)
  const hash = await hasher.hash('Correct Horse')
  t.equal(await hasher.verify(hash, 'Correct Horse'), true)
  t.equal(await hasher.verify(hash, 'correct horse'), false)
  t.equal(await hasher.verify(hash, 'Correct Horse '), false)
})

test('verify: when there is no stored hash, then false after doing the same work', async (t) => {
  const hasher = await createPasswordHasher(cheap, pool)
  t.equal(await hasher.verify(undefined, 'anything'), false)
})

test('verify: when the stored hash is not a hash, then false rather than an exception', async (t) => {
  const hasher = await createPasswordHasher(cheap, pool)
  t.equal(await hasher.verify('not-a-hash', 'anything'), false)
})

test('needsRehash: when the parameters differ or the hash is not argon2id, then true', async (t) => {
  const hasher = await createPasswordHasher(cheap, pool)
  const stronger = await createPasswordHasher({ ...cheap, timeCost: 2 }, pool)
  const hash = await hasher.hash('password123')
  t.equal(hasher.needsRehash(hash), false)
  t.equal(stronger.needsRehash(hash), true)
  t.equal(hasher.needsRehash('$2b$12$abcdefghijklmnopqrstuu'), true)
  t.equal(parsePhc('$argon2i$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA'), undefined)
})

// Imported users' hashes. Published vectors: crypt_blowfish's test list (Openwall, wrapper.c) and the FastAPI security
// tutorial's user (passlib's bcrypt, password "secret") for bcrypt; passlib's own test suite (test_handlers.py,
// pbkdf2_sha256_test.known_correct_hashes) for pbkdf2-sha256.
const OPENWALL_BCRYPT = '$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'
const FASTAPI_TUTORIAL_BCRYPT = '$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW'
const PASSLIB_PBKDF2 = [
  { password: 'password', hash: '$pbkdf2-sha256$1212$4vjV83LKPjQzk31VI4E0Vw$hsYF68OiOUPdDZ1Fg.fJPeq1h/gXXY7acBp9/6c.tmQ' },
  { password: '\u0399\u03c9\u03b1\u03bd\u03bd\u03b7\u03c2', hash: '$pbkdf2-sha256$1212$3SABFJGDtyhrQMVt1uABPw$WyaUoqCLgvz97s523nF4iuOqZNbp5Nt8do/cuaa7AiI' }
]

/** passlib's "ab64": standard base64 with '.' for '+' and no padding. */
const ab64 = (bytes: Buffer): string => bytes.toString('base64').replace(/=+$/, '').replaceAll('+', '.')

test('verify: when the stored hash is bcrypt as $2a$, $2b$ or $2y$, then the password verifies and no other does', async (t) => {
  const hasher = await createPasswordHasher(cheap, pool)
  for (const version of ['2a', '2b', '2y'] as const) {
    const stored = bcryptHash('pässwörd 🔑', { cost: 4, version })
    t.match(stored, `$${version}$04$`)
    t.equal(await hasher.verify(stored, 'pässwörd 🔑'), true, `$${version}$ verifies`)
    t.equal(await hasher.verify(stored, 'passwörd 🔑'), false, `$${version}$ refuses another password`)
  }
  // The three prefixes name one algorithm for such passwords: the published $2a$ vector verifies under each.
  for (const prefix of ['$2a$', '$2b$', '$2y$']) {
    t.equal(await hasher.verify(prefix + OPENWALL_BCRYPT.slice(4), 'U*U'), true, `${prefix} Openwall vector`)
    t.equal(await hasher.verify(prefix + OPENWALL_BCRYPT.slice(4), 'U*U*'), false)
  }
  t.equal(await hasher.verify(FASTAPI_TUTORIAL_BCRYPT, 'secret'), true, 'the FastAPI tutorial\'s passlib hash')
  t.equal(await hasher.verify(FASTAPI_TUTORIAL_BCRYPT, 'Secret'), false)
})

test('verify: when the stored hash is passlib pbkdf2-sha256, then the password verifies and no other does', async (t) => {
  const hasher = await createPasswordHasher(cheap, pool)
  for (const { password, hash } of PASSLIB_PBKDF2) {
    t.equal(await hasher.verify(hash, password), true, `passlib's vector for ${password}`)
    t.equal(await hasher.verify(hash, password.toUpperCase()), false)
  }
  // Computed here the way passlib computes it: PBKDF2-HMAC-SHA256 of the UTF-8 password, 32 bytes, ab64 throughout.
  const salt = randomBytes(16)
  const password = 'correct horse battery staple ✓'
  const computed = `$pbkdf2-sha256$29000$${ab64(salt)}$${ab64(pbkdf2Sync(password, salt, 29000, 32, 'sha256'))}`
  t.equal(await hasher.verify(computed, password), true)
  t.equal(await hasher.verify(computed, 'correct horse battery staple'), false)
  t.equal(hasher.needsRehash(computed), true, 'rehashed to argon2id at the first login')
})

test('verify: when the stored hash is argon2i or argon2d in PHC form, then the password verifies and no other does', async (t) => {
  const hasher = await createPasswordHasher(cheap, pool)
  for (const algorithm of [Algorithm.Argon2i, Algorithm.Argon2d]) {
    const stored = argon2Hash('old app password', { algorithm, memoryCost: 1024, timeCost: 1 })
    t.equal(await hasher.verify(stored, 'old app password'), true, stored.split('$')[1])
    t.equal(await hasher.verify(stored, 'old app passwort'), false)
    t.equal(hasher.needsRehash(stored), true)
  }
})

test('verify: when a stored hash asks for more work than the limits allow, then the worker refuses it and verify says false', async (t) => {
  const hasher = await createPasswordHasher(cheap, pool)
  const costly = [
    '$2b$16$' + OPENWALL_BCRYPT.slice(7),
    `$pbkdf2-sha256$${HASH_COST_LIMITS.pbkdf2Rounds + 1}$${PASSLIB_PBKDF2[0].hash.split('$').slice(3).join('$')}`
  ]
  for (const storedHash of costly) {
    const result = await pool.run({ operation: 'verify', password: 'password', storedHash, options: { ...cheap } })
    t.match(result.error, /above the limit/, storedHash.split('$')[1])
    t.equal(await hasher.verify(storedHash, 'password'), false)
  }
  t.equal(await hasher.verify('$pbkdf2-sha512$1212$RHY0Fr3IDMSVO/RSZyb5ow$eNLfBK', 'password'), false, 'other formats: false')
})
