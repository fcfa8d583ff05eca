// Adapter over a private path of @fastify/rate-limit: its Redis store (store/RedisStore.js, an atomic Lua INCR +
// PEXPIRE), which the package does not export. test/adapters/rate-limit-redis-store.test.ts fails when an update
// moves it or changes its shape.
import { createRequire } from 'node:module'
import type { Redis } from 'ioredis'

export type StoreCallback = (error: Error | null, result: { current: number, ttl: number } | null) => void

/** The store interface @fastify/rate-limit calls (what its `store` option must construct). */
export interface RateLimitStore {
  incr: (key: string, callback: StoreCallback, timeWindow: number, max: number) => void
  child: (routeOptions: unknown) => RateLimitStore
}

type StoreClass = new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, prefix: string) => RateLimitStore

let RedisStore: StoreClass | undefined

/** @fastify/rate-limit's own Redis store on our client, with keys under `prefix`. */
export function createRedisStore (redis: Redis, prefix: string): RateLimitStore {
  RedisStore ??= createRequire(import.meta.url)('@fastify/rate-limit/store/RedisStore.js') as StoreClass
  if (typeof RedisStore !== 'function' || typeof RedisStore.prototype.incr !== 'function' || typeof RedisStore.prototype.child !== 'function') {
    throw new Error('@fastify/rate-limit/store/RedisStore.js changed shape: update src/adapters/rate-limit-redis-store.ts')
  }
  return new RedisStore(false, false, redis, prefix)
}
