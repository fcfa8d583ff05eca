import { generateKeyPairSync, createHmac, createPrivateKey, createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto'
import Fastify, { type FastifyRequest } from 'fastify'
import fastifyJwt, { type TokenOrHeader } from '@fastify/jwt'
import buildGetJwks from 'get-jwks'
import { sql } from 'drizzle-orm'
import { test } from 'tap'
import { buildApp } from '../../src/app.js'
import { loadKeyRing } from '../../src/services/keys.js'
import { b64url, bearer, build, claimsOf, embeddedDatabase, headerOf, login, me, register, tempDir, testConfig, trapServer } from '../helper.js'

const pem = (key: KeyObject, type: 'pkcs8' | 'spki'): string => key.export({ format: 'pem', type }).toString()

function ed25519 (): { privatePem: string, publicPem: string, key: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return { privatePem: pem(privateKey, 'pkcs8'), publicPem: pem(publicKey, 'spki'), key: privateKey }
}

/** Signs header.payload with the given Ed25519 key: a token as the real key would make it, headers included. */
function signEd25519 (header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64url(header)}.${b64url(payload)}`
  return `${input}.${cryptoSign(null, Buffer.from(input), key).toString('base64url')}`
}

test('keys: when neither a key nor JWT_SECRET is set, then an Ed25519 key is generated once, kept in DATA_DIR and published', async (t) => {
  const dataDir = await tempDir(t)
  const app = await build(t, { JWT_SECRET: undefined, DATA_DIR: dataDir })
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  const header = headerOf(token)
  t.equal(header.alg, 'EdDSA')
  t.equal(header.typ, 'at+jwt')
  t.type(header.kid, 'string')
  t.equal((await me(app, token)).statusCode, 200)
  const jwks = (await app.inject({ url: '/.well-known/jwks.json' })).json()
  t.same(jwks.keys.map((k: { kid: string }) => k.kid), [header.kid])
  t.match(jwks.keys[0], { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' })
  t.notOk('d' in jwks.keys[0], 'no private member is published')

  const again = await loadKeyRing({ DATA_DIR: dataDir })
  t.equal(again.signing.kid, header.kid, 'a restart signs with the same key')
})

test('keys: when JWT_SECRET is set, then HS256 without kid and an empty JWKS', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const token = await login(app, user.username, user.password)
  t.same(headerOf(token), { alg: 'HS256', typ: 'at+jwt' })
  t.same((await app.inject({ url: '/.well-known/jwks.json' })).json(), { keys: [] })
})

const algorithms: Array<[string, () => KeyObject, string]> = [
  ['ES256 (EC P-256 PEM)', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'ES256'],
  ['RS256 (RSA 2048 PEM)', () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'RS256'],
  ['EdDSA (Ed25519 PEM)', () => generateKeyPairSync('ed25519').privateKey, 'EdDSA']
]
for (const [name, make, alg] of algorithms) {
  test(`keys: when JWT_PRIVATE_KEY is ${name}, then tokens are signed with ${alg} and verify`, async (t) => {
    const app = await build(t, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: pem(make(), 'pkcs8') })
    const user = await register(app)
    const token = await login(app, user.username, user.password)
    t.equal(headerOf(token).alg, alg)
    t.equal((await me(app, token)).statusCode, 200)
    t.equal((await app.inject({ url: '/.well-known/jwks.json' })).json().keys[0].alg, alg)
  })
}

test('keys: when JWT_PRIVATE_KEY is a JWK with a kid, or a PEM with escaped newlines, then it is used as given', async (t) => {
  const { privateKey } = generateKeyPairSync('ed25519')
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'key-2026-11' }
  const fromJwk = await build(t, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: JSON.stringify(jwk) })
  const user = await register(fromJwk)
  t.equal(headerOf(await login(fromJwk, user.username, user.password)).kid, 'key-2026-11')
  const ring = await loadKeyRing({ DATA_DIR: '/nonexistent', JWT_PRIVATE_KEY: pem(privateKey, 'pkcs8').replaceAll('\n', '\\n') })
  t.equal(ring.signing.alg, 'EdDSA')
})

test('keys: when a key is unusable, then the start fails naming the setting', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ JWT_PRIVATE_KEY: 'not a key' }, /JWT_PRIVATE_KEY: is neither PEM nor JWK/],
    [{ JWT_PRIVATE_KEY: pem(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey, 'pkcs8') }, /JWT_PRIVATE_KEY: unsupported key/],
    [{ JWT_PRIVATE_KEY: pem(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey, 'pkcs8') }, /JWT_PRIVATE_KEY: unsupported key/],
    [{ JWT_PRIVATE_KEY: ed25519().publicPem }, /JWT_PRIVATE_KEY: must hold exactly one private key/],
    [{ JWT_PRIVATE_KEY: ed25519().privatePem, JWT_VERIFY_KEYS: '{broken' }, /JWT_VERIFY_KEYS: /],
    [{ JWT_PRIVATE_KEY_FILE: '/nonexistent/key.pem' }, /JWT_PRIVATE_KEY_FILE: cannot read/]
  ]
  const database = await embeddedDatabase()
  for (const [settings, message] of cases) {
    await t.rejects(buildApp(testConfig({ JWT_SECRET: undefined, ...settings }), { database }), message)
  }
})

test('keys: when the signing key rotates, then tokens of the old key keep working until it is removed', async (t) => {
  const oldKey = ed25519()
  const newKey = ed25519()
  const before = await build(t, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: oldKey.privatePem })
  const user = await register(before)
  const oldToken = await login(before, user.username, user.password)

  // Step 1 of the procedure: sign with the new key, keep the old one as a verification key.
  const during = await build(t, { DATABASE_URL: before.config.DATABASE_URL, JWT_SECRET: undefined, JWT_PRIVATE_KEY: newKey.privatePem, JWT_VERIFY_KEYS: oldKey.publicPem }, before.config.DATABASE_URL === undefined ? { database: before.database } : {})
  t.equal((await me(during, oldToken)).statusCode, 200, 'a token of the old key still works')
  const newToken = await login(during, user.username, user.password)
  t.not(headerOf(newToken).kid, headerOf(oldToken).kid)
  t.equal((await me(during, newToken)).statusCode, 200)
  const kids = (await during.inject({ url: '/.well-known/jwks.json' })).json().keys.map((k: { kid: string }) => k.kid)
  t.same(kids, [headerOf(newToken).kid, headerOf(oldToken).kid], 'the JWKS publishes both, the signing key first')

  // Step 2, once every old token has expired: drop the old key.
  const after = await build(t, { DATABASE_URL: before.config.DATABASE_URL, JWT_SECRET: undefined, JWT_PRIVATE_KEY: newKey.privatePem }, before.config.DATABASE_URL === undefined ? { database: before.database } : {})
  t.equal((await me(after, oldToken)).statusCode, 401)
  t.equal((await me(after, newToken)).statusCode, 200)
})

test('keys: when a token tries algorithm confusion or points at foreign keys, then 401 with no outbound request and no database lookup', async (t) => {
  const { url: trapUrl, requests: outbound } = await trapServer(t)

  const key = ed25519()
  const app = await build(t, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: key.privatePem })
  const user = await register(app)
  const good = await login(app, user.username, user.password)
  const kid = headerOf(good).kid as string
  const claims = claimsOf(good)

  const hmacWithPublicKey = (header: Record<string, unknown>): string => {
    const input = `${b64url(header)}.${b64url(claims)}`
    return `${input}.${createHmac('sha256', key.publicPem).update(input).digest('base64url')}`
  }
  const forged: Array<[string, string]> = [
    ['HS256 signed with the public key, with its kid', hmacWithPublicKey({ alg: 'HS256', typ: 'at+jwt', kid })],
    ['HS256 signed with the public key, without kid', hmacWithPublicKey({ alg: 'HS256', typ: 'at+jwt' })],
    ['a jku header', signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid, jku: `${trapUrl}/jwks.json` }, claims, key.key)],
    ['an x5u header', signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid, x5u: `${trapUrl}/cert.pem` }, claims, key.key)],
    ['an embedded jwk header', signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid, jwk: createPrivateKey(key.privatePem).export({ format: 'jwk' }) }, claims, key.key)],
    ['a kid that is a number', signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid: 1 }, claims, key.key)],
    ['a kid with a path', signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid: '../../../../dev/null' }, claims, key.key)],
    ['a kid with SQL', signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid: "' or '1'='1" }, claims, key.key)],
    ['an empty kid', signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid: '' }, claims, key.key)],
    ['a 10 KB kid', signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k'.repeat(10240) }, claims, key.key)],
    ['a kid of another key', signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid }, claims, ed25519().key)]
  ]

  // Count queries from here on: a refused token must cost none.
  const db = app.database.db as unknown as Record<string, (...args: unknown[]) => unknown>
  let queries = 0
  for (const method of ['select', 'execute', 'update', 'insert']) {
    const original = db[method]
    db[method] = (...args: unknown[]) => { queries++; return original.apply(db, args) }
    t.teardown(() => { db[method] = original })
  }
  for (const [name, token] of forged) {
    const res = await app.inject({ url: '/users/me', headers: bearer(token) })
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, 'invalid_token', name)
  }
  t.equal(outbound(), 0, 'nothing fetched a key from the URLs in the headers')
  t.equal(queries, 0, 'no database lookup for a refused token')
  t.equal((await me(app, good)).statusCode, 200, 'the real token, untouched, still works')
})

test('keys: when another service verifies through the JWKS alone (@fastify/jwt + get-jwks), then it accepts our tokens and nothing else', async (t) => {
  const app = await build(t, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: ed25519().privatePem })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const issuerUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const config = testConfig()

  const downstream = Fastify()
  t.teardown(async () => { await downstream.close() })
  const getJwks = buildGetJwks({ providerDiscovery: false })
  await downstream.register(fastifyJwt, {
    decode: { complete: true },
    secret: async (_request: FastifyRequest, token: TokenOrHeader) => {
      const header = 'header' in token ? token.header : token
      // getJwk rather than getPublicKey: the latter converts through jwk-to-pem, which has no OKP (Ed25519).
      const jwk = await getJwks.getJwk({ domain: issuerUrl, kid: header.kid, alg: header.alg })
      return createPublicKey({ key: jwk as never, format: 'jwk' }).export({ format: 'pem', type: 'spki' }).toString()
    },
    verify: { algorithms: ['EdDSA', 'ES256', 'RS256'], allowedIss: config.JWT_ISSUER, allowedAud: config.JWT_AUDIENCE }
  })
  downstream.get('/orders', { onRequest: async (request) => { await request.jwtVerify() } }, async (request) => ({ owner: (request.user as { sub: string }).sub }))
  // A downstream decision from the token alone: the scope claim (RFC 9068), granted by a role defined here.
  downstream.post('/orders', {
    onRequest: async (request, reply) => {
      await request.jwtVerify()
      if (!String((request.user as { scope?: string }).scope ?? '').split(' ').includes('orders:write')) {
        await reply.code(403).header('www-authenticate', 'Bearer error="insufficient_scope", scope="orders:write"').send()
      }
    }
  }, async () => ({ created: true }))

  const user = await register(app)
  const token = await login(app, user.username, user.password)
  const ok = await downstream.inject({ url: '/orders', headers: bearer(token) })
  t.equal(ok.statusCode, 200, ok.body)
  t.same(ok.json(), { owner: user.id })

  t.equal((await downstream.inject({ method: 'POST', url: '/orders', headers: bearer(token) })).statusCode, 403, 'no orders:write: refused downstream')
  await app.database.db.execute(sql`insert into roles (name, scopes) values ('orders-clerk', '{orders:write}') on conflict do nothing`)
  await app.database.db.execute(sql`insert into user_roles (user_id, role_name) values (${user.id}::uuid, 'orders-clerk')`)
  const clerkToken = await login(app, user.username, user.password)
  t.equal(claimsOf(clerkToken).scope, 'orders:write')
  const created = await downstream.inject({ method: 'POST', url: '/orders', headers: bearer(clerkToken) })
  t.equal(created.statusCode, 200, 'with the scope its role grants: accepted downstream')

  const forged = signEd25519(headerOf(token), claimsOf(token), ed25519().key)
  const refused = await downstream.inject({ url: '/orders', headers: bearer(forged) })
  t.equal(refused.statusCode, 401, 'a token signed by another key with our kid is refused downstream')
})
