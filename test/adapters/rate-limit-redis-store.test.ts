import { test } from 'tap'
import { Redis } from 'ioredis'
import { createRedisStore, type RateLimitStore } from '../../src/adapters/rate-limit-redis-store.js'
import { startRedis } from '../helper.js'

const incr = async (store: RateLimitStore, key: string, timeWindow: number, max: number): Promise<{ current: number, ttl: number }> =>
  await new Promise((resolve, reject) => {
    store.incr(key, (error, result) => { if (error !== null || result === null) reject(error ?? new Error('no result')); else resolve(result) }, timeWindow, max)
  })

test('rate-limit adapter: when @fastify/rate-limit\'s Redis store counts on a real Redis, then it counts per key under our prefix with the window as TTL', async (t) => {
  const server = await startRedis(t)
  const redis = new Redis(server.url, { maxRetriesPerRequest: 0 })
  t.teardown(() => { redis.disconnect() })
  const store = createRedisStore(redis, 'adapter-test:')
  t.equal(typeof store.child, 'function', 'route stores come from child()')

  const first = await incr(store, '127.0.0.1', 60_000, 3)
  const second = await incr(store, '127.0.0.1', 60_000, 3)
  t.equal(first.current, 1)
  t.equal(second.current, 2)
  t.ok(second.ttl > 0 && second.ttl <= 60_000, `ttl ${second.ttl} ms within the window`)
  t.equal((await incr(store, '10.0.0.1', 60_000, 3)).current, 1, 'another client has a count of its own')
  const keys = await redis.keys('adapter-test:*')
  t.ok(keys.length >= 2 && keys.every(k => k.startsWith('adapter-test:')), `keys under the prefix: ${keys.join(', ')}`)
  const routeStore = store.child({ routeInfo: { method: 'POST', url: '/auth/token' } })
  t.equal((await incr(routeStore, '127.0.0.1', 60_000, 3)).current, 1, 'a route\'s store counts apart from the global one')
})
