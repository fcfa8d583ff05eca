import { test } from 'tap'
import { Algorithm, hashSync as argon2Hash } from '@node-rs/argon2'
import { HASH_COST_LIMITS, storedHashProblem } from '../../src/services/hash-formats.js'
import { bcryptHash } from '../helper.js'

const PASSLIB_PBKDF2 = '$pbkdf2-sha256$1212$4vjV83LKPjQzk31VI4E0Vw$hsYF68OiOUPdDZ1Fg.fJPeq1h/gXXY7acBp9/6c.tmQ'
const BCRYPT_TAIL = 'CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'

test('storedHashProblem: when the hash is bcrypt ($2a$, $2b$, $2y$), pbkdf2-sha256 or argon2 within the limits, then none', async (t) => {
  const accepted = [
    bcryptHash('pw', { cost: 4, version: '2a' }),
    bcryptHash('pw', { cost: 4, version: '2b' }),
    bcryptHash('pw', { cost: 4, version: '2y' }),
    `$2b$${HASH_COST_LIMITS.bcryptCost}$${BCRYPT_TAIL}`,
    PASSLIB_PBKDF2,
    `$pbkdf2-sha256$${HASH_COST_LIMITS.pbkdf2Rounds}$$${PASSLIB_PBKDF2.split('$')[4]}`,
    argon2Hash('pw', { algorithm: Algorithm.Argon2id, memoryCost: 1024, timeCost: 1 }),
    argon2Hash('pw', { algorithm: Algorithm.Argon2i, memoryCost: 1024, timeCost: 1 }),
    // argon2 1.0 hashes carry no version field.
    '$argon2i$m=4096,t=3,p=1$c2FsdHNhbHRzYWx0$GpZ3sK/oH9p7VIiV56G/64Zo/8GaUw434IimaPqxwCo'
  ]
  for (const hash of accepted) t.equal(storedHashProblem(hash), undefined, hash.slice(0, 16))
})

test('storedHashProblem: when the hash is another format, malformed or too costly, then a reason that does not quote it', async (t) => {
  const refused: Array<[string, RegExp]> = [
    ['plain text password', /not a bcrypt, pbkdf2-sha256 or argon2 hash/],
    ['pbkdf2_sha256$600000$salt$checksum=', /not a bcrypt/],
    ['$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0', /not a bcrypt/],
    ['$pbkdf2-sha512$1212$RHY0Fr3IDMSVO/RSZyb5ow$eNLfBK', /not a bcrypt/],
    [`$2x$05$${BCRYPT_TAIL}`, /malformed bcrypt/],
    [`$2b$05$${BCRYPT_TAIL.slice(1)}`, /malformed bcrypt/],
    [`$2b$03$${BCRYPT_TAIL}`, /cost 3 is below 4/],
    [`$2b$${HASH_COST_LIMITS.bcryptCost + 1}$${BCRYPT_TAIL}`, /cost 16 is above 15/],
    [PASSLIB_PBKDF2.replace('4vjV', '4v+V'), /malformed pbkdf2-sha256/],
    [PASSLIB_PBKDF2.slice(0, -1), /malformed pbkdf2-sha256/],
    [PASSLIB_PBKDF2.replace('$1212$', '$01212$'), /malformed pbkdf2-sha256/],
    [PASSLIB_PBKDF2.replace('$1212$', `$${HASH_COST_LIMITS.pbkdf2Rounds + 1}$`), /rounds 2000001 are above 2000000/],
    ['$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ', /malformed argon2/],
    [`$argon2id$v=19$m=${HASH_COST_LIMITS.argon2MemoryKib * 2},t=1,p=1$c2FsdHNhbHRzYWx0$GpZ3sK/oH9p7VIiV56G/64Zo`, /memory m=2097152 is above 1048576/],
    [`$2b$05$${BCRYPT_TAIL}${'x'.repeat(500)}`, /longer than any supported hash/]
  ]
  for (const [hash, reason] of refused) {
    const problem = storedHashProblem(hash)
    t.match(problem, reason, hash.slice(0, 24))
    t.notOk(problem?.includes(hash), 'the hash is not quoted')
  }
})
