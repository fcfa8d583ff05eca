import { createHmac, createPublicKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { test, type Test } from 'tap'
import verifier, { type VerifierOptions } from '../packages/fastify-auth-verifier/src/index.js'
import {
  as, assertSessionEnded, b64url, bearer, build, claimsOf, eventually, formPost, freePort, grantRole, headerOf, loginPair,
  register, registerAdmin, testConfig, TIMING_MARGIN_MS, trapServer, type Assert
} from './helper.js'

const AUDIENCE = testConfig().JWT_AUDIENCE
const rsa = (): KeyObject => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
const SIGNING_KEY = rsa()
const SIGNING_PEM = SIGNING_KEY.export({ format: 'pem', type: 'pkcs8' }).toString()
const PUBLIC_PEM = createPublicKey(SIGNING_KEY).export({ format: 'pem', type: 'spki' }).toString()

interface Service {
  app: FastifyInstance
  url: string
  /** Event streams of the ended-session feed open right now. */
  openStreams: () => number
}

/** The whole service, signing with RS256, listening on loopback at the address its metadata names. */
async function startService (t: Test): Promise<Service> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const app = await build(t, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: SIGNING_PEM, PORT: port, PUBLIC_URL: url })
  await app.listen({ port, host: '127.0.0.1' })
  let streams = 0
  app.server.on('request', (request, response) => {
    if (request.url?.startsWith('/sessions/ended/stream') !== true) return
    streams++
    response.once('close', () => { streams-- })
  })
  return { app, url, openStreams: () => streams }
}

interface Client { client_id: string, client_secret: string }

async function createClient (service: Service, adminToken: string, scopes = ['sessions:ended']): Promise<Client> {
  const res = await service.app.inject(as(adminToken, { method: 'POST', url: '/admin/clients', payload: { name: 'orders-service', scopes } }))
  if (res.statusCode !== 201) throw new Error(`create client failed: ${res.statusCode} ${res.body}`)
  return res.json()
}

interface Downstream {
  app: FastifyInstance
  /** The path of every request the plugin made. */
  fetched: string[]
}

/** Another service: the plugin, a route behind `authenticate` and one that only names a scope. */
async function startDownstream (t: Test, service: Service, client: Client, options: Partial<VerifierOptions> = {}): Promise<Downstream> {
  const fetched: string[] = []
  const countingFetch: typeof fetch = async (input, init) => {
    fetched.push(new URL(String(input)).pathname)
    return await fetch(input, init)
  }
  const app = Fastify()
  t.teardown(async () => { await app.close() })
  await app.register(verifier, { authUrl: service.url, audience: AUDIENCE, clientId: client.client_id, clientSecret: client.client_secret, fetch: countingFetch, ...options })
  app.get('/orders', { onRequest: [app.authenticate] }, async (request) => ({ sub: request.user.sub, sid: request.user.sid, scope: request.user.scope ?? null }))
  app.post('/orders', { config: { scopes: ['orders:write'] } }, async (request) => ({ created: true, by: request.user.sub }))
  await app.ready()
  return { app, fetched }
}

/** A service and a downstream app that has synced with its feed, and an administrator. */
async function setup (t: Test, options: Partial<VerifierOptions> = {}): Promise<{ service: Service, downstream: Downstream, adminToken: string, client: Client }> {
  const service = await startService(t)
  const admin = await registerAdmin(service.app)
  const client = await createClient(service, admin.token)
  const downstream = await startDownstream(t, service, client, options)
  await downstream.app.authVerifier.whenSynced(10_000)
  return { service, downstream, adminToken: admin.token, client }
}

const orders = async (downstream: Downstream, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> =>
  await downstream.app.inject({ url: '/orders', headers })

/** The downstream answered exactly as the service did: status, challenge, content type, body. */
function assertSameAnswer (t: Assert, downstream: LightMyRequestResponse, service: LightMyRequestResponse, what: string): void {
  t.equal(downstream.statusCode, service.statusCode, `${what}: status ${service.statusCode} (got ${downstream.statusCode} ${downstream.body.slice(0, 200)})`)
  t.equal(downstream.headers['www-authenticate'], service.headers['www-authenticate'], `${what}: challenge`)
  t.match(downstream.headers['content-type'], /^application\/problem\+json/, `${what}: problem document`)
  t.same(downstream.json(), service.json(), `${what}: body`)
}

function signRs256 (header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject = SIGNING_KEY): string {
  const input = `${b64url(header)}.${b64url(payload)}`
  return `${input}.${cryptoSign('sha256', Buffer.from(input), key).toString('base64url')}`
}

test('verifier: when a valid token comes, then 200 with its claims; without one or with another scheme, the service\'s 401', async (t) => {
  const { service, downstream } = await setup(t)
  const user = await register(service.app)
  const pair = await loginPair(service.app, user)

  const ok = await orders(downstream, bearer(pair.access))
  t.equal(ok.statusCode, 200, ok.body)
  t.same(ok.json(), { sub: user.id, sid: pair.sid, scope: claimsOf(pair.access).scope ?? null })

  for (const [what, headers] of [['no Authorization', {}], ['Basic', { authorization: 'Basic dXNlcjpwYXNz' }], ['an empty bearer', { authorization: 'Bearer' }]] as const) {
    const service401 = await service.app.inject({ url: '/users/me', headers })
    t.equal(service401.statusCode, 401)
    assertSameAnswer(t, await orders(downstream, headers), service401, what)
  }
  t.match(downstream.app.authVerifier.status(), { keys: 1, synced: true, fresh: true })
})

test('verifier: when a token is forged, expired or of the wrong type, issuer or audience, then 401 exactly as the service answers, with no key fetched from its headers', async (t) => {
  const { url: trapUrl, requests: outbound } = await trapServer(t)

  const { service, downstream } = await setup(t)
  const user = await register(service.app)
  const good = (await loginPair(service.app, user)).access
  const header = headerOf(good)
  const kid = header.kid as string
  const claims = claimsOf(good)
  const now = Math.floor(Date.now() / 1000)
  const hmacWithPublicKey = (h: Record<string, unknown>): string => {
    const input = `${b64url(h)}.${b64url(claims)}`
    return `${input}.${createHmac('sha256', PUBLIC_PEM).update(input).digest('base64url')}`
  }
  const [goodHeader, goodPayload] = good.split('.')
  const forged: Array<[string, string]> = [
    ['alg none', `${b64url({ alg: 'none', typ: 'at+jwt', kid })}.${b64url(claims)}.`],
    ['HS256 signed with the public key, with its kid', hmacWithPublicKey({ alg: 'HS256', typ: 'at+jwt', kid })],
    ['HS256 signed with the public key, without kid', hmacWithPublicKey({ alg: 'HS256', typ: 'at+jwt' })],
    ['a jku header', signRs256({ ...header, jku: `${trapUrl}/jwks.json` }, claims)],
    ['an x5u header', signRs256({ ...header, x5u: `${trapUrl}/cert.pem` }, claims)],
    ['an x5c header', signRs256({ ...header, x5c: ['MIIB'] }, claims)],
    ['an embedded jwk header', signRs256({ ...header, jwk: SIGNING_KEY.export({ format: 'jwk' }) }, claims)],
    ['a kid that is a number', signRs256({ ...header, kid: 1 }, claims)],
    ['a kid with a path', signRs256({ ...header, kid: '../../../../dev/null' }, claims)],
    ['a kid with SQL', signRs256({ ...header, kid: "' or '1'='1" }, claims)],
    ['an empty kid', signRs256({ ...header, kid: '' }, claims)],
    ['no kid', signRs256({ alg: 'RS256', typ: 'at+jwt' }, claims)],
    ['a 10 KB kid', signRs256({ ...header, kid: 'k'.repeat(10240) }, claims)],
    ['a kid of another key', signRs256(header, claims, rsa())],
    ['typ JWT', signRs256({ ...header, typ: 'JWT' }, claims)],
    ['no typ', signRs256({ alg: 'RS256', kid }, claims)],
    ['another issuer', signRs256(header, { ...claims, iss: 'someone-else' })],
    ['another audience', signRs256(header, { ...claims, aud: 'another-service' })],
    ['no exp', signRs256(header, { ...claims, exp: undefined })],
    ['not valid before an hour from now', signRs256(header, { ...claims, nbf: now + 3600 })],
    ['a sid that is not a UUID', signRs256(header, { ...claims, sid: 'x' })],
    ['a client token that names a user', signRs256(header, { ...claims, client_id: claims.sub })],
    ['claims changed after signing', `${goodHeader}.${b64url({ ...claims, sub: '00000000-0000-4000-8000-000000000000' })}.${good.split('.')[2]}`],
    ['the signature of another token', `${goodHeader}.${goodPayload}.${signRs256(header, { ...claims, jti: 'other' }).split('.')[2]}`],
    ['not a JWT', 'abc.def'],
    ['a header that is not JSON', `${b64url('{nope')}.e30.c2ln`],
    ['expired', signRs256(header, { ...claims, iat: now - 1000, exp: now - 100 })]
  ]
  for (const [what, token] of forged) {
    const atService = await service.app.inject({ url: '/users/me', headers: bearer(token) })
    t.equal(atService.statusCode, 401, `${what}: the service refuses it`)
    assertSameAnswer(t, await orders(downstream, bearer(token)), atService, what)
  }
  const expired = (await orders(downstream, bearer(signRs256(header, { ...claims, iat: now - 1000, exp: now - 100 })))).json()
  t.same([expired.code, expired.detail], ['token_expired', 'Token has expired'])
  t.equal(outbound(), 0, 'nothing fetched a key from the URLs in the headers')
  t.equal((await orders(downstream, bearer(good))).statusCode, 200, 'the real token, untouched, still works')
})

test('verifier: when tokens with unknown kids flood in, then the JWKS is fetched at most once per interval', async (t) => {
  const intervalMs = 2000
  const { service, downstream } = await setup(t, { jwksRefetchIntervalMs: intervalMs })
  const user = await register(service.app)
  const claims = claimsOf((await loginPair(service.app, user)).access)
  const jwksFetches = (): number => downstream.fetched.filter(path => path === '/.well-known/jwks.json').length
  const flood = async (count: number): Promise<number[]> => await Promise.all(Array.from({ length: count }, async (_, i) =>
    (await orders(downstream, bearer(signRs256({ alg: 'RS256', typ: 'at+jwt', kid: `forged-${Date.now()}-${i}` }, claims, SIGNING_KEY)))).statusCode))

  t.equal(jwksFetches(), 1, 'fetched once at start')
  const withinInterval = await flood(200)
  t.ok(withinInterval.every(s => s === 401), 'every forged kid refused')
  t.equal(jwksFetches(), 1, 'within the interval of the first fetch: none refetched')

  await sleep(intervalMs + 100)
  const afterInterval = await flood(200)
  t.ok(afterInterval.every(s => s === 401), 'every forged kid refused')
  t.equal(jwksFetches(), 2, 'after the interval: 200 unknown kids, one refetch')
  await flood(200)
  t.equal(jwksFetches(), 2, 'and none more within the next interval')
})

test('verifier: when a route names scopes, then it is protected and a token without them gets the service\'s 403 insufficient_scope', async (t) => {
  const { service, downstream, adminToken } = await setup(t)
  const user = await register(service.app)
  const token = (await loginPair(service.app, user)).access

  const noToken = await downstream.app.inject({ method: 'POST', url: '/orders' })
  t.equal(noToken.statusCode, 401, 'a route with config.scopes and no hook of its own is still protected')

  const refused = await downstream.app.inject({ method: 'POST', url: '/orders', headers: bearer(token) })
  t.equal(refused.statusCode, 403)
  t.equal(refused.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="orders:write"')
  t.match(refused.headers['content-type'], /^application\/problem\+json/)
  t.same(refused.json(), { type: 'about:blank', title: 'Forbidden', status: 403, detail: 'This operation needs the scope orders:write', code: 'insufficient_scope' })
  // The service's own 403, for comparison: the same shape and challenge, for its scope.
  const atService = await service.app.inject({ url: '/admin/users', headers: bearer(token) })
  t.equal(atService.statusCode, 403)
  t.same(Object.keys(atService.json()).sort(), Object.keys(refused.json()).sort())
  t.equal(atService.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="users:read"')

  const role = await service.app.inject(as(adminToken, { method: 'PUT', url: '/admin/roles/orders-clerk', payload: { description: 'Takes orders', scopes: ['orders:write'] } }))
  t.equal(role.statusCode, 201, role.body)
  await grantRole(service.app, user.id, 'orders-clerk')
  const clerk = (await loginPair(service.app, user)).access
  const created = await downstream.app.inject({ method: 'POST', url: '/orders', headers: bearer(clerk) })
  t.equal(created.statusCode, 200, created.body)
  t.same(created.json(), { created: true, by: user.id })
})

test('verifier: when a user logs out or a service client is deleted, then the downstream refuses its token within one second', async (t) => {
  const { service, downstream, adminToken } = await setup(t)
  const user = await register(service.app)
  const pair = await loginPair(service.app, user)
  t.equal((await orders(downstream, bearer(pair.access))).statusCode, 200)

  t.equal((await service.app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(pair.access) })).statusCode, 204)
  const tookMs = await eventually(async () => (await orders(downstream, bearer(pair.access))).statusCode === 401, { timeoutMs: 1000 + TIMING_MARGIN_MS, intervalMs: 10, what: 'the downstream refusing the logged-out token' })
  t.ok(tookMs < 1000 + TIMING_MARGIN_MS, `refused after ${Math.round(tookMs)} ms`)
  const ended = await orders(downstream, bearer(pair.access))
  assertSessionEnded(t, ended, 'downstream')
  assertSameAnswer(t, ended, await service.app.inject({ url: '/users/me', headers: bearer(pair.access) }), 'the logged-out token')

  const other = await createClient(service, adminToken, ['sessions:ended'])
  const basic = `Basic ${Buffer.from(`${other.client_id}:${other.client_secret}`).toString('base64')}`
  const issued = await service.app.inject(formPost('/auth/token', { grant_type: 'client_credentials' }, { authorization: basic }))
  t.equal(issued.statusCode, 200, 'a client_credentials token')
  const clientToken = issued.json().access_token as string
  const asClient = await orders(downstream, bearer(clientToken))
  t.equal(asClient.statusCode, 200, 'a service client\'s token is accepted')
  t.equal(asClient.json().sub, other.client_id)
  t.equal((await service.app.inject(as(adminToken, { method: 'DELETE', url: `/admin/clients/${other.client_id}` }))).statusCode, 204)
  await eventually(async () => (await orders(downstream, bearer(clientToken))).statusCode === 401, { timeoutMs: 1000 + TIMING_MARGIN_MS, intervalMs: 10, what: 'the downstream refusing the deleted client\'s token' })
  assertSessionEnded(t, await orders(downstream, bearer(clientToken)), 'deleted client')
})

test('verifier: when the feed has not synced, or has been silent longer than staleAfterMs, then 503 verifier_unavailable by default and 200 with failOpen', async (t) => {
  const staleAfterMs = 6000
  const service = await startService(t)
  const admin = await registerAdmin(service.app)
  const client = await createClient(service, admin.token)
  const closed = await startDownstream(t, service, client, { staleAfterMs })
  const open = await startDownstream(t, service, client, { staleAfterMs, failOpen: true })
  const wrongSecret = { ...client, client_secret: 'not-the-secret' }
  const neverSynced = await startDownstream(t, service, wrongSecret, { staleAfterMs })
  const neverSyncedOpen = await startDownstream(t, service, wrongSecret, { staleAfterMs, failOpen: true })
  await closed.app.authVerifier.whenSynced(10_000)
  await open.app.authVerifier.whenSynced(10_000)
  const user = await register(service.app)
  const token = (await loginPair(service.app, user)).access

  const assertUnavailable = (res: LightMyRequestResponse, what: string): void => {
    t.equal(res.statusCode, 503, `${what}: 503 (got ${res.statusCode} ${res.body.slice(0, 200)})`)
    t.equal(res.headers['retry-after'], '5', `${what}: Retry-After`)
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${what}: problem document`)
    t.match(res.json(), { type: 'about:blank', title: 'Service Unavailable', status: 503, code: 'verifier_unavailable' }, `${what}: body`)
  }
  await eventually(() => neverSynced.app.authVerifier.status().keys === 1, { timeoutMs: 10_000, what: 'keys loaded without a feed' })
  assertUnavailable(await orders(neverSynced, bearer(token)), 'a feed never synced (its client secret is wrong)')
  await eventually(() => neverSyncedOpen.app.authVerifier.status().keys === 1, { timeoutMs: 10_000, what: 'keys loaded without a feed' })
  t.equal((await orders(neverSyncedOpen, bearer(token))).statusCode, 200, 'failOpen: accepted without a feed')
  t.equal((await orders(closed, bearer(token))).statusCode, 200, 'synced: accepted')

  await service.app.close()
  await eventually(async () => (await orders(closed, bearer(token))).statusCode === 503, { timeoutMs: staleAfterMs + 2 * TIMING_MARGIN_MS, intervalMs: 100, what: 'the downstream failing closed' })
  assertUnavailable(await orders(closed, bearer(token)), 'the feed silent past staleAfterMs')
  t.equal(closed.app.authVerifier.status().fresh, false)
  t.equal((await orders(open, bearer(token))).statusCode, 200, 'failOpen: still accepted')
  t.equal((await orders(closed, bearer('abc.def'))).statusCode, 401, 'a bad token is still a 401, not a 503')
})

test('verifier: when the downstream app closes, then its feed and timers stop and it makes no more requests', async (t) => {
  const { service, downstream } = await setup(t)
  t.equal(service.openStreams(), 1, 'one stream while it runs')
  await downstream.app.close()
  await eventually(() => service.openStreams() === 0, { timeoutMs: 1000 + TIMING_MARGIN_MS, what: 'the stream closed at the service' })
  const count = downstream.fetched.length
  await sleep(1500)
  t.equal(downstream.fetched.length, count, 'no request after close')
})
