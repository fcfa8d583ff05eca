import { availableParallelism } from 'node:os'
import fp from 'fastify-plugin'
import { HashPool } from '../services/hash-pool.js'
import { createPasswordHasher, type PasswordHasher } from '../services/password-hasher.js'
import { createUserService, type UserService } from '../services/users.js'
import { createAdminUserService, type AdminUserService } from '../services/admin-users.js'
import { createRoleService, type RoleService } from '../services/roles.js'
import { createPasswordPolicy, type PasswordPolicy } from '../services/password-policy.js'

declare module 'fastify' {
  interface FastifyInstance {
    passwordHasher: PasswordHasher
    passwordPolicy: PasswordPolicy
    users: UserService
    adminUsers: AdminUserService
    roles: RoleService
  }
}

/** The password hasher on its thread pool, the password policy, and the user services on top of it (the users' own, administration). */
export default fp(async (app) => {
  const { ARGON2_MEMORY_KIB, ARGON2_TIME_COST, ARGON2_PARALLELISM, PASSWORD_HASH_THREADS, PASSWORD_HASH_QUEUE_MAX, USER_CACHE_TTL_MS } = app.config
  // One argon2 thread per core unless PASSWORD_HASH_THREADS says otherwise, reniced below the event loop.
  const pool = new HashPool(PASSWORD_HASH_THREADS ?? availableParallelism(), 10, PASSWORD_HASH_QUEUE_MAX)
  app.addHook('onClose', async () => { await pool.close() })
  const passwordHasher = await createPasswordHasher({
    memoryCost: ARGON2_MEMORY_KIB,
    timeCost: ARGON2_TIME_COST,
    parallelism: ARGON2_PARALLELISM
  }, pool, (operation, seconds) => { app.metrics.passwordHash.observe({ operation }, seconds) })
  app.decorate('passwordHasher', passwordHasher)
  // The list of breached passwords loads on a worker thread from here on; the first check waits for it if need be.
  const passwordPolicy = createPasswordPolicy({ minLength: app.config.PASSWORD_MIN_LENGTH })
  passwordPolicy.preload()
  app.decorate('passwordPolicy', passwordPolicy)
  app.decorate('users', createUserService(app.database.db, passwordHasher, { ttlMs: USER_CACHE_TTL_MS }))
  app.decorate('adminUsers', createAdminUserService(app.database.db))
  app.decorate('roles', createRoleService(app.database.db))
}, { name: 'users', dependencies: ['config', 'database', 'metrics'] })
