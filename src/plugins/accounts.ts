import fp from 'fastify-plugin'
import { publicUrl } from '../config.js'
import { createAccountService, type AccountService } from '../services/accounts.js'

declare module 'fastify' {
  interface FastifyInstance {
    accounts: AccountService
    /**
     * Runs work after the answer has gone (a reset request answers 202 at once, whether or not the address is
     * known, and sends later): failures are logged, and closing waits for what is under way.
     */
    inBackground: (what: string, work: () => Promise<unknown>) => void
  }
}

// How long closing waits for work under way (a message being written to the outbox).
const DRAIN_MS = 5000

/** Password change and reset, email verification: the account service over users, sessions and the mail outbox. */
export default fp(async (app) => {
  const { config, database, passwordHasher, passwordPolicy, users, sessions, mail, loginThrottle } = app
  app.decorate('accounts', createAccountService({
    db: database.db,
    hasher: passwordHasher,
    policy: passwordPolicy,
    users,
    sessions,
    mail,
    throttle: loginThrottle,
    publicUrl: publicUrl(config),
    resetTtlSeconds: config.PASSWORD_RESET_TTL,
    verifyTtlSeconds: config.EMAIL_VERIFY_TTL
  }))

  const running = new Set<Promise<unknown>>()
  app.decorate('inBackground', (what: string, work: () => Promise<unknown>) => {
    const task = work().catch((error: unknown) => { app.log.error({ err: error }, `${what} failed`) })
      .finally(() => { running.delete(task) })
    running.add(task)
  })
  app.addHook('preClose', async () => {
    await Promise.race([Promise.all(running), new Promise(resolve => setTimeout(resolve, DRAIN_MS).unref())])
  })
}, { name: 'accounts', dependencies: ['config', 'database', 'users', 'sessions', 'mail', 'login-throttle'] })
