import fp from 'fastify-plugin'
import Fastify from 'fastify'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { CountedHistogram, type HistogramSeries } from '../adapters/prom-client-histogram.js'

export interface Metrics {
  registry: Registry
  logins: Counter<'outcome'>
  refreshes: Counter<'outcome'>
  refreshReuse: Counter
  rateLimited: Counter<'route'>
  passwordHash: Histogram<'operation'>
  /** Requests answered 503 because the database did not answer (counted by the error handlers). */
  databaseUnavailable: Counter
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
    /** The server of METRICS_PORT (not the public port), for a scraper on an internal network. */
    metricsServer: FastifyInstance
  }
}

type DurationLabel = 'method' | 'route' | 'status_code'

/**
 * The request-duration histogram, counted per method, status and route in plain arrays found by a string key:
 * prom-client's observe() validates and hashes the label object on every call, a cost paid on every request.
 */
export class RequestDurations extends CountedHistogram<DurationLabel> {
  private readonly byKey = new Map<string, HistogramSeries<DurationLabel> & { counts: Float64Array }>()

  record (method: string, route: string, statusCode: number, seconds: number): void {
    const key = `${method} ${statusCode} ${route}`
    let series = this.byKey.get(key)
    if (series === undefined) {
      series = { labels: { method, route, status_code: statusCode }, counts: new Float64Array(this.bounds.length), sum: 0, count: 0 }
      this.byKey.set(key, series)
    }
    let i = 0
    while (i < this.bounds.length && seconds > this.bounds[i]) i++
    if (i < this.bounds.length) series.counts[i]++
    series.sum += seconds
    series.count++
  }

  protected series (): Iterable<HistogramSeries<DurationLabel>> {
    return this.byKey.values()
  }

  protected clear (): void {
    this.byKey?.clear()
  }
}

/** One registry per app (tests build many in one process); Prometheus text at /metrics, or on METRICS_PORT. */
export default fp(async (app) => {
  const registry = new Registry()
  const { METRICS_ENABLED, METRICS_PORT, HOST } = app.config

  const httpDuration = new RequestDurations({
    name: 'http_request_duration_seconds',
    help: 'Request duration by route (the route pattern, not the URL) and status',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry]
  })
  const metrics: Metrics = {
    registry,
    logins: new Counter({ name: 'auth_logins_total', help: 'Password logins by outcome', labelNames: ['outcome'], registers: [registry] }),
    refreshes: new Counter({ name: 'auth_token_refreshes_total', help: 'Refresh-token grants by outcome', labelNames: ['outcome'], registers: [registry] }),
    refreshReuse: new Counter({ name: 'auth_refresh_token_reuse_total', help: 'Retired refresh tokens presented after the grace window (sessions ended as stolen)', registers: [registry] }),
    rateLimited: new Counter({ name: 'http_rate_limited_total', help: 'Requests refused with 429, by route', labelNames: ['route'], registers: [registry] }),
    passwordHash: new Histogram({
      name: 'auth_password_hash_duration_seconds',
      help: 'argon2id time per hash or verify',
      labelNames: ['operation'],
      buckets: [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28],
      registers: [registry]
    }),
    databaseUnavailable: new Counter({ name: 'db_unavailable_responses_total', help: 'Requests answered 503 because the database did not answer', registers: [registry] })
  }
  app.decorate('metrics', metrics)
  // On a port of its own, for a scraper on an internal network: the public port never serves /metrics.
  const server = Fastify({ logger: false })
  app.decorate('metricsServer', server)
  app.addHook('onClose', async () => { await server.close() })
  if (!METRICS_ENABLED) return

  collectDefaultMetrics({ register: registry })
  const { database } = app
  new Gauge({ // eslint-disable-line no-new
    name: 'db_up',
    help: '1 while the database answers this instance, 0 during an outage (from the last query or probe, not a new one)',
    registers: [registry],
    collect () { this.set(database.available() ? 1 : 0) }
  })
  const max = new Gauge({ name: 'db_pool_max', help: 'Most connections this instance opens', registers: [registry] })
  max.set(database.poolMax)
  new Gauge({ // eslint-disable-line no-new
    name: 'db_pool_connections',
    help: 'This instance\'s open database connections by state (active: running a query)',
    labelNames: ['state'],
    registers: [registry],
    async collect () {
      try {
        const stats = await database.poolStats()
        this.set({ state: 'active' }, stats.active)
        this.set({ state: 'idle' }, stats.idle)
      } catch {
        this.reset()
      }
    }
  })

  app.addHook('onResponse', (request, reply, done) => {
    httpDuration.record(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000)
    done()
  })

  server.get('/metrics', async (_request, reply) => {
    return await reply.type(registry.contentType).send(await registry.metrics())
  })
  // At ready rather than at listen: onListen hooks do not hold up listen(), and a scraper may ask at once.
  app.addHook('onReady', async () => {
    const address = await server.listen({ host: HOST, port: METRICS_PORT })
    app.log.info({ address }, 'metrics listening')
  })
}, { name: 'metrics', dependencies: ['config', 'database'] })
