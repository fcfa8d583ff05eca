import { test } from 'tap'
import { Histogram, Registry } from 'prom-client'
import { RequestDurations } from '../../src/plugins/metrics.js'

const configuration = (registry: Registry) => ({
  name: 'http_request_duration_seconds',
  help: 'Request duration by route (the route pattern, not the URL) and status',
  labelNames: ['method', 'route', 'status_code'] as Array<'method' | 'route' | 'status_code'>,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry]
})

// On bucket bounds, between them, past the last one, for several series.
const observations: Array<[string, string, number, number]> = [
  ['GET', '/users/me', 200, 0.0004], ['GET', '/users/me', 200, 0.001], ['GET', '/users/me', 200, 0.0011],
  ['GET', '/users/me', 401, 0.03], ['POST', '/auth/token', 200, 0.08], ['POST', '/auth/token', 200, 2.5],
  ['POST', '/auth/token', 200, 7], ['GET', 'unmatched', 404, 0.0002], ['GET', '/users/me', 200, 0.25]
]

test('metrics: when request durations are recorded, then /metrics shows what prom-client\'s own Histogram writes for them', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const durations = new RequestDurations(configuration(ours))
  const reference = new Histogram(configuration(theirs))
  for (const [method, route, status, seconds] of observations) {
    durations.record(method, route, status, seconds)
    reference.observe({ method, route, status_code: status }, seconds)
  }
  const text = await ours.metrics()
  t.equal(text, await theirs.metrics())
  t.match(text, /http_request_duration_seconds_count\{method="POST",route="\/auth\/token",status_code="200"\} 3/)

  durations.reset()
  reference.reset()
  t.equal(await ours.metrics(), await theirs.metrics(), 'after a reset as well')
})

test('prom-client adapter: when the registry writes text or JSON, then it reads our histogram through the methods the adapter overrides', async (t) => {
  // The private API: Registry.metrics() calls getForPromString() when a metric has it, else get().
  t.equal(typeof (Histogram.prototype as unknown as { getForPromString?: unknown }).getForPromString, 'function',
    'prom-client\'s Histogram still has getForPromString(): if not, check what Registry.metrics() calls now')
  const registry = new Registry()
  const durations = new RequestDurations(configuration(registry))
  durations.record('GET', '/probe', 200, 0.002)
  const calls: string[] = []
  const get = durations.get.bind(durations)
  const forProm = durations.getForPromString.bind(durations)
  durations.get = async () => { calls.push('get'); return await get() }
  durations.getForPromString = async () => { calls.push('getForPromString'); return await forProm() }
  t.match(await registry.metrics(), /http_request_duration_seconds_count\{method="GET",route="\/probe",status_code="200"\} 1/)
  t.ok(calls.length > 0, `the text format came from the adapter (${calls.join(', ')})`)
  calls.length = 0
  const json = await registry.getMetricsAsJSON()
  t.ok(calls.includes('get'), 'the JSON format too')
  t.equal((json[0].values as Array<{ metricName?: string, value: number }>).find(v => v.metricName === 'http_request_duration_seconds_count')?.value, 1)
})
