import { test } from 'tap'
import Fastify, { type FastifyPluginAsync } from 'fastify'
import configPlugin from '../../src/plugins/config.js'
import errorHandler from '../../src/plugins/error-handler.js'
import metrics from '../../src/plugins/metrics.js'
import notFound from '../../src/plugins/not-found.js'
import users from '../../src/plugins/users.js'
import sessions from '../../src/plugins/sessions.js'
import mail from '../../src/plugins/mail.js'
import auth from '../../src/plugins/auth.js'
import loginThrottle from '../../src/plugins/login-throttle.js'
import { testConfig } from '../helper.js'

// A plugin registered before what it reads must stop the boot, naming what is missing, not fail at the first request.
const cases: Array<{ plugin: FastifyPluginAsync, before: FastifyPluginAsync[], missing: RegExp }> = [
  { plugin: auth, before: [], missing: /endedSessions/ },
  { plugin: metrics, before: [], missing: /database/ },
  { plugin: users, before: [], missing: /database/ },
  { plugin: sessions, before: [], missing: /database/ },
  { plugin: mail, before: [], missing: /database/ },
  { plugin: loginThrottle, before: [], missing: /database/ },
  { plugin: notFound, before: [errorHandler], missing: /rate-limit/ },
  { plugin: errorHandler, before: [], missing: /config/ }
]

for (const { plugin, before, missing } of cases) {
  const name = (plugin as unknown as Record<symbol, string>)[Symbol.for('fastify.display-name')]
  test(`plugin order: when ${name} is registered before what it needs, then the app fails at boot naming ${missing.source}`, async (t) => {
    const app = Fastify({ logger: false })
    t.teardown(async () => { await app.close() })
    if (name !== 'error-handler') app.register(configPlugin, { config: testConfig({ RATE_LIMIT_ENABLED: true }) })
    for (const first of before) app.register(first)
    app.register(plugin)
    await t.rejects(async () => { await app.ready() }, missing)
  })
}
