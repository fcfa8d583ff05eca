import tap, { test } from 'tap'
import { HashPool } from '../../src/services/hash-pool.js'
import { createPasswordHasher, parsePhc } from '../../src/services/password-hasher.js'

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
