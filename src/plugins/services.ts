import { availableParallelism } from 'node:os'
import fp from 'fastify-plugin'
import { HashPool } from '../services/hash-pool.js'
import { createPasswordHasher, type PasswordHasher } from '../services/password-hasher.js'
import { createUserService, type UserService } from '../services/users.js'

declare module 'fastify' {
  interface FastifyInstance {
    passwordHasher: PasswordHasher
    users: UserService
  }
}

export default fp(async (app) => {
  const { ARGON2_MEMORY_KIB, ARGON2_TIME_COST, ARGON2_PARALLELISM } = app.config
  // One argon2 thread per core (PASSWORD_HASH_THREADS), reniced below the event loop.
  const pool = new HashPool(app.config.PASSWORD_HASH_THREADS ?? availableParallelism())
  app.addHook('onClose', async () => { await pool.close() })
  const passwordHasher = await createPasswordHasher({
    memoryCost: ARGON2_MEMORY_KIB,
    timeCost: ARGON2_TIME_COST,
    parallelism: ARGON2_PARALLELISM
  }, pool, (operation, seconds) => { app.metrics.passwordHash.observe({ operation }, seconds) })
  app.decorate('passwordHasher', passwordHasher)
  // The same bound as ended sessions: what another instance changed shows here within SESSION_SYNC_INTERVAL_MS.
  app.decorate('users', createUserService(app.database.db, passwordHasher, { ttlMs: app.config.SESSION_SYNC_INTERVAL_MS }))
}, { name: 'services', dependencies: ['config', 'database', 'metrics'] })
