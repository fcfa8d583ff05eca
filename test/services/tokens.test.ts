import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { test } from 'tap'
import { createSigner } from 'fast-jwt'
import { loadKeyRing, type KeyRing } from '../../src/services/keys.js'
import { createTokenService, type TokenService } from '../../src/services/tokens.js'
import { ProblemError } from '../../src/errors.js'
import { forgeToken, TEST_SECRET, VALID_HEADER, validClaims } from '../helper.js'

const ISSUER = 'auth-service'
const AUDIENCE = 'auth-service'
// Every ring here has a key set, so none is generated into DATA_DIR.
const NO_DIR = '/nonexistent'

/** The service as the auth plugin builds it, signing with fast-jwt directly (what @fastify/jwt wraps). */
function tokenService (keyRing: KeyRing, options: { ttlSeconds?: number, verifiedCacheSize?: number } = {}): TokenService {
  const ttlSeconds = options.ttlSeconds ?? 900
  const { signing } = keyRing
  const signer = createSigner({
    key: signing.key,
    algorithm: signing.alg,
    kid: signing.kid,
    header: { alg: signing.alg, typ: 'at+jwt' },
    expiresIn: ttlSeconds * 1000,
    iss: ISSUER,
    aud: AUDIENCE
  })
  return createTokenService({ keyRing, issuer: ISSUER, audience: AUDIENCE, ttlSeconds, sign: (payload) => signer(payload), ...options })
}

const user = { id: randomUUID(), username: 'alice', emailVerified: false }
const GRANT = { scope: 'orders:read users:read', roles: ['admin', 'user'] }
const hmacRing = async (): Promise<KeyRing> => await loadKeyRing({ JWT_SECRET: TEST_SECRET, DATA_DIR: NO_DIR })

function problemOf (fn: () => unknown): ProblemError {
  try {
    fn()
  } catch (error) {
    if (error instanceof ProblemError) return error
    throw error
  }
  throw new Error('expected a problem, got none')
}

test('tokens: when a token is issued, then it verifies to the user\'s claims, scope and roles with the configured lifetime', async (t) => {
  const tokens = tokenService(await hmacRing(), { ttlSeconds: 600 })
  const sessionId = randomUUID()
  const { accessToken, expiresIn } = tokens.issue(user, sessionId, GRANT)
  t.equal(expiresIn, 600)
  const claims = tokens.verify(`Bearer ${accessToken}`)
  t.match(claims, { sub: user.id, sid: sessionId, preferred_username: 'alice', iss: ISSUER, aud: AUDIENCE, scope: 'orders:read users:read', email_verified: false })
  t.same(claims.roles, ['admin', 'user'])
  t.equal(claims.exp - claims.iat, 600)
  t.ok(claims.jti.length > 0)
  t.not(tokens.issue(user, sessionId, GRANT).accessToken, accessToken, 'every token has its own jti')
})

test('tokens: when the same Authorization header comes again, then the remembered claims answer and the scheme is case-insensitive', async (t) => {
  const tokens = tokenService(await hmacRing())
  const { accessToken } = tokens.issue(user, randomUUID(), GRANT)
  const first = tokens.verify(`Bearer ${accessToken}`)
  t.equal(tokens.verify(`Bearer ${accessToken}`), first, 'the same object: no second verification')
  t.same(tokens.verify(`bearer ${accessToken}`), first)
})

test('tokens: when a remembered token passes its exp, then it is refused as expired', async (t) => {
  const tokens = tokenService(await hmacRing())
  const header = `Bearer ${tokens.issue(user, randomUUID(), GRANT).accessToken}`
  const claims = tokens.verify(header)
  const realNow = Date.now
  t.teardown(() => { Date.now = realNow })
  Date.now = () => claims.exp * 1000 + 1
  t.match(problemOf(() => tokens.verify(header)), { status: 401, code: 'token_expired', detail: 'Token has expired' })
  t.match(problemOf(() => tokens.verify(header)), { status: 401, code: 'token_expired', detail: 'Token has expired' }, 'and again, by the signature check')
})

test('tokens: when more headers verify than the cache holds, then the oldest is verified anew', async (t) => {
  const tokens = tokenService(await hmacRing(), { verifiedCacheSize: 2 })
  const headers = [0, 1, 2].map(() => `Bearer ${tokens.issue(user, randomUUID(), GRANT).accessToken}`)
  const firstClaims = tokens.verify(headers[0])
  t.equal(tokens.verify(headers[0]), firstClaims)
  tokens.verify(headers[1])
  tokens.verify(headers[2])
  const again = tokens.verify(headers[0])
  t.not(again, firstClaims, 'evicted: verified again into a new object')
  t.same(again, firstClaims)
})

test('tokens: when the Authorization header is missing or not a bearer token, then 401 not_authenticated', async (t) => {
  const tokens = tokenService(await hmacRing())
  for (const header of [undefined, '', 'Basic dXNlcjpwYXNz', 'Bearer', 'Token abc']) {
    t.match(problemOf(() => tokens.verify(header)), { status: 401, code: 'not_authenticated' }, String(header))
  }
})

test('tokens: when a token is forged, expired, of another key, kid or type, or names keys elsewhere, then 401 invalid_token', async (t) => {
  const tokens = tokenService(await hmacRing())
  const claims = validClaims(user.id)
  const now = Math.floor(Date.now() / 1000)
  const cases: Record<string, string> = {
    'another secret': forgeToken(VALID_HEADER, claims, 'another-secret-that-is-long-enough-1234567'),
    'an unknown kid': forgeToken({ ...VALID_HEADER, kid: 'nobody' }, claims),
    'a jku header': forgeToken({ ...VALID_HEADER, jku: 'https://attacker.example/jwks' }, claims),
    'a jwk header': forgeToken({ ...VALID_HEADER, jwk: { kty: 'oct', k: 'x' } }, claims),
    'typ JWT': forgeToken({ alg: 'HS256', typ: 'JWT' }, claims),
    'alg none': `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`,
    'another issuer': forgeToken(VALID_HEADER, { ...claims, iss: 'someone-else' }),
    'a sid that is not a UUID': forgeToken(VALID_HEADER, { ...claims, sid: 'x' }),
    'no exp': forgeToken(VALID_HEADER, { ...claims, exp: undefined }),
    'not a JWT': 'abc.def',
    'a header that is not JSON': `${Buffer.from('{nope').toString('base64url')}.e30.c2ln`
  }
  for (const [name, token] of Object.entries(cases)) {
    t.match(problemOf(() => tokens.verify(`Bearer ${token}`)), { status: 401, code: 'invalid_token' }, name)
  }
  const expired = forgeToken(VALID_HEADER, { ...claims, iat: now - 1000, exp: now - 100 })
  t.match(problemOf(() => tokens.verify(`Bearer ${expired}`)), { status: 401, code: 'token_expired', detail: 'Token has expired' })
})

test('tokens: when a ring has a new signing key and the old one verifies, then tokens of both verify and each is routed by kid', async (t) => {
  const pem = (): string => generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  const oldPem = pem()
  const oldRing = await loadKeyRing({ JWT_PRIVATE_KEY: oldPem, DATA_DIR: NO_DIR })
  const newRing = await loadKeyRing({ JWT_PRIVATE_KEY: pem(), JWT_VERIFY_KEYS: oldPem, DATA_DIR: NO_DIR })
  const oldToken = tokenService(oldRing).issue(user, randomUUID(), GRANT).accessToken
  const rotated = tokenService(newRing)
  t.equal(rotated.verify(`Bearer ${oldToken}`).sub, user.id, 'the old key still verifies')
  t.equal(rotated.verify(`Bearer ${rotated.issue(user, randomUUID(), GRANT).accessToken}`).sub, user.id)
  const unrelated = tokenService(await loadKeyRing({ JWT_PRIVATE_KEY: pem(), DATA_DIR: NO_DIR }))
  t.match(problemOf(() => unrelated.verify(`Bearer ${oldToken}`)), { code: 'invalid_token' }, 'a ring without the key refuses it')
})

test('tokens: when sessionOf is given an expired token of ours, then it answers its session; for anything else, undefined', async (t) => {
  const tokens = tokenService(await hmacRing())
  const now = Math.floor(Date.now() / 1000)
  const sid = randomUUID()
  const expired = forgeToken(VALID_HEADER, { ...validClaims(user.id), sid, iat: now - 1000, exp: now - 100 })
  t.equal(tokens.sessionOf(expired), sid)
  t.equal(tokens.sessionOf(tokens.issue(user, sid, GRANT).accessToken), sid)
  t.equal(tokens.sessionOf(forgeToken(VALID_HEADER, { ...validClaims(user.id), sid }, 'another-secret-that-is-long-enough-1234567')), undefined)
  t.equal(tokens.sessionOf('not a token'), undefined)
})

test('tokens: when a token is older than ACCESS_TOKEN_TTL (issued under a longer one before a restart), then it is refused as expired whatever its exp', async (t) => {
  const ring = await hmacRing()
  const now = Math.floor(Date.now() / 1000)
  // Issued two minutes ago under a TTL of an hour: exp is still 58 minutes away.
  const old = forgeToken(VALID_HEADER, { ...validClaims(randomUUID()), iat: now - 120, exp: now + 3480 })
  const problem = problemOf(() => tokenService(ring, { ttlSeconds: 60 }).verify(`Bearer ${old}`))
  t.equal(problem.status, 401)
  t.equal(problem.detail, 'Token has expired')
  t.ok(tokenService(ring, { ttlSeconds: 3600 }).verify(`Bearer ${old}`), 'within the TTL it was issued under, it verifies')
})
