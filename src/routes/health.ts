import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { DatabaseUnavailable, isDatabaseUnavailable } from '../db/availability.js'
import { Problems } from '../errors.js'
import { problemResponses } from '../schemas/problem.js'

// A load balancer's probe waits no longer than this: a frozen database is a 503 within a second.
const READY_TIMEOUT_MS = 700

const StatusSchema = Type.Object({ status: Type.Literal('ok') }, { description: 'Up', examples: [{ status: 'ok' }] })

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/live', {
    config: { rateLimit: false },
    schema: { tags: ['health'], summary: 'The process answers', operationId: 'getLiveness', security: [], response: { 200: StatusSchema } }
  }, async () => ({ status: 'ok' as const }))

  app.get('/ready', {
    config: { rateLimit: false },
    schema: {
      tags: ['health'],
      summary: 'The process and its database answer',
      operationId: 'getReadiness',
      security: [],
      response: { 200: StatusSchema, ...problemResponses(503) }
    }
  }, async (request) => {
    // During an outage the answer is known without asking; otherwise one ping, answered within a second either way.
    if (!app.database.available()) throw Problems.databaseUnavailable()
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        app.database.ping(),
        new Promise((_resolve, reject) => { timer = setTimeout(() => { reject(new DatabaseUnavailable(`no answer within ${READY_TIMEOUT_MS} ms`)) }, READY_TIMEOUT_MS) })
      ])
    } catch (error) {
      // The outage is logged once by the database plugin; anything else that fails a ping is worth a line.
      if (!isDatabaseUnavailable(error)) request.log.warn({ err: error }, 'database ping failed')
      throw Problems.databaseUnavailable()
    } finally {
      clearTimeout(timer)
    }
    return { status: 'ok' as const }
  })
}

export default healthRoutes
