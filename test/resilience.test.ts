import { test } from 'tap'
import { build, formPost, register } from './helper.js'
import { loadConfig, trustProxyOption } from '../src/config.js'

test('TRUST_PROXY: when set to a boolean word, a hop count or addresses and CIDR ranges, then Fastify gets that form; anything else is refused at start', async (t) => {
  const option = (value: string) => trustProxyOption(loadConfig({ TRUST_PROXY: value }))
  t.equal(option('false'), false)
  t.equal(option('true'), true)
  t.equal(option('2'), 2)
  t.same(option('10.0.0.0/8, 127.0.0.1,::1, fd00::/8'), ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8'])
  t.equal(trustProxyOption(loadConfig({})), false, 'off by default')
  for (const bad of ['proxy.example.com', '10.0.0.0/33', '300.1.1.1', '1,,2']) {
    t.throws(() => loadConfig({ TRUST_PROXY: bad }), /TRUST_PROXY/, bad)
  }
})

test('TRUST_PROXY: when X-Forwarded-For comes from a peer that is not trusted, then it changes no limit\'s key; from a trusted peer it does', async (t) => {
  const app = await build(t, { TRUST_PROXY: '127.0.0.1', RATE_LIMIT_ENABLED: true, RATE_LIMIT_TOKEN_MAX: 2 })
  const attempt = async (peer: string, forwardedFor: string) => await app.inject({
    ...formPost('/auth/token', { username: 'nobody-here', password: 'not a password' }, { 'x-forwarded-for': forwardedFor }),
    remoteAddress: peer
  })
  const untrusted = []
  for (let i = 0; i < 3; i++) untrusted.push((await attempt('192.0.2.10', `198.51.100.${i}`)).statusCode)
  t.same(untrusted, [401, 401, 429], 'an untrusted peer is limited by its own address, whatever it forwards')
  const trusted = []
  for (let i = 0; i < 3; i++) trusted.push((await attempt('127.0.0.1', `203.0.113.${i}`)).statusCode)
  t.same(trusted, [401, 401, 401], 'behind the trusted proxy, each forwarded client has its own count')
})

test('TRUST_PROXY: when it is a hop count, then the nearest proxy\'s X-Forwarded-For is taken from any peer', async (t) => {
  const app = await build(t, { TRUST_PROXY: '1', RATE_LIMIT_ENABLED: true, RATE_LIMIT_TOKEN_MAX: 2 })
  const statuses = []
  for (let i = 0; i < 3; i++) {
    statuses.push((await app.inject({
      ...formPost('/auth/token', { username: 'nobody-here', password: 'not a password' }, { 'x-forwarded-for': `203.0.113.${i}` }),
      remoteAddress: '192.0.2.10'
    })).statusCode)
  }
  t.same(statuses, [401, 401, 401])
})

test('login storm: when more password checks arrive than the hash queue holds, then the overflow is 503 temporarily_unavailable with Retry-After at once, never a 500, and the rest are answered', async (t) => {
  const app = await build(t, { PASSWORD_HASH_THREADS: 1, PASSWORD_HASH_QUEUE_MAX: 2, ARGON2_MEMORY_KIB: 32768, ARGON2_TIME_COST: 3 })
  const user = await register(app)
  const answers = await Promise.all(Array.from({ length: 8 }, async () =>
    await app.inject(formPost('/auth/token', { username: user.username, password: user.password }))))
  const statuses = answers.map(res => res.statusCode)
  t.ok(statuses.filter(s => s === 200).length >= 3, `the running and queued logins succeed (${statuses.join(' ')})`)
  const refused = answers.filter(res => res.statusCode === 503)
  t.ok(refused.length >= 1, 'the overflow is refused')
  for (const res of refused) {
    t.same(res.json(), { error: 'temporarily_unavailable', error_description: 'Too many password checks under way; retry shortly' })
    t.equal(res.headers['retry-after'], '1')
  }
  t.equal(statuses.filter(s => s !== 200 && s !== 503).length, 0, 'nothing else')
})
