// A run's results drawn as two SVGs with vega-lite (compiled to a vega spec, rendered headless: no canvas, no
// browser): throughput per scenario against the bare Fastify baseline, and login latency against concurrency.
import { writeFile } from 'node:fs/promises'
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'
import type { LoginLevel, Row } from './report.js'

/** The parts of a saved bench/results/*.json the charts read. */
export interface ChartInput {
  date: string
  node: string
  cores: number
  durationSeconds: number
  rounds: number
  rows: Array<Pick<Row, 'scenario' | 'rps' | 'ratioToBaseline'>>
  /** Absent in results written before the login levels were measured: then there is no latency chart. */
  loginLevels?: LoginLevel[]
  /** The scale scenarios (rows named by label), when the run had them: then a third chart. */
  scale?: { sizes: Array<{ name: string, users: number }>, routes: Array<{ route: string, small: string, large: string }> }
}

export interface Charts { throughput: string, loginLatency?: string, scale?: string }
export interface ChartPaths { throughput: string, loginLatency: string, scale: string }

const FONT = 'sans-serif'
const WIDTH = 520

export async function drawCharts (result: ChartInput): Promise<Charts> {
  const levels = result.loginLevels ?? []
  return {
    throughput: await render(throughputSpec(result)),
    ...(levels.length > 0 ? { loginLatency: await render(loginLatencySpec(result, levels)) } : {}),
    ...(result.scale !== undefined && result.scale.routes.length > 0 ? { scale: await render(scaleSpec(result, result.scale)) } : {})
  }
}

/** The charts beside a results file (`<name>-throughput.svg`, `<name>-login-latency.svg`) or under other names. */
export async function writeCharts (result: ChartInput, paths: ChartPaths): Promise<string[]> {
  const charts = await drawCharts(result)
  const written: string[] = []
  for (const name of ['throughput', 'loginLatency', 'scale'] as const) {
    const svg = charts[name]
    if (svg === undefined) continue
    await writeFile(paths[name], svg)
    written.push(paths[name])
  }
  return written
}

export const chartPathsBeside = (resultsFile: string): ChartPaths => {
  const stem = resultsFile.replace(/\.json$/, '')
  return { throughput: `${stem}-throughput.svg`, loginLatency: `${stem}-login-latency.svg`, scale: `${stem}-scale.svg` }
}

/** Horizontal bars on a log scale: logins are a few thousandths of the baseline, reads more than half of it. */
function throughputSpec (result: ChartInput): TopLevelSpec {
  // The scale scenarios have a chart of their own.
  const values = result.rows.filter(row => !row.scenario.startsWith('s-')).map((row, i) => ({
    scenario: row.scenario,
    ratio: Math.max(row.ratioToBaseline, 1e-4),
    kind: kindOf(row.scenario, i),
    label: `${row.rps >= 100 ? Math.round(row.rps).toLocaleString('en') : row.rps.toFixed(1)} req/s, ${row.ratioToBaseline.toFixed(3)}`
  }))
  const ratios = values.map(v => v.ratio)
  // Below the smallest ratio, so that its bar has a length (a bar starting at the smallest value was invisible).
  const from = Math.min(...ratios) / 2
  // Room on the right for the labels of the longest bars.
  const to = Math.max(5, 4 * Math.max(...ratios))
  const x = {
    field: 'ratio',
    type: 'quantitative' as const,
    title: 'req/s as a ratio to the bare Fastify baseline (log scale)',
    scale: { type: 'log' as const, domain: [from, to], nice: false },
    axis: { format: '~g' }
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Throughput per scenario against the baseline', subtitle: runLine(result), font: FONT },
    width: WIDTH,
    height: { step: 22 },
    config: { font: FONT, axisY: { labelLimit: 0 }, legend: { labelLimit: 0 } }, // 0: never truncated
    data: { values },
    layer: [
      {
        mark: { type: 'bar', tooltip: false },
        encoding: {
          y: { field: 'scenario', type: 'nominal', sort: null, title: null },
          x,
          x2: { datum: from },
          color: { field: 'kind', type: 'nominal', title: null, legend: { orient: 'bottom', columns: 2 }, scale: { domain: KINDS, range: ['#7f7f7f', '#4c78a8', '#72b7b2', '#f58518'] } }
        }
      },
      {
        mark: { type: 'text', align: 'left', dx: 4, fontSize: 10 },
        encoding: { y: { field: 'scenario', type: 'nominal', sort: null }, x, text: { field: 'label' } }
      },
      { mark: { type: 'rule', strokeDash: [4, 3], color: '#333' }, encoding: { x: { datum: 1 } } }
    ]
  }
}

const KINDS = ['bare Fastify baseline', 'the service', 'downstream (verifier plugin)', 'hashes a password (argon2)']

/** By label, as the report finds its rows: the first row is the baseline (summarizeRounds divides by it). */
function kindOf (scenario: string, index: number): string {
  if (index === 0) return KINDS[0]
  if (/^v\d/.test(scenario)) return KINDS[2]
  if (/ password| \/auth\/register/.test(scenario)) return KINDS[3]
  return KINDS[1]
}

/** Each scale route's req/s at the small and the large size, side by side (log scale: logins and reads differ 100 times). */
function scaleSpec (result: ChartInput, scale: NonNullable<ChartInput['scale']>): TopLevelSpec {
  const rps = (label: string): number => result.rows.find(r => r.scenario === label)?.rps ?? 0
  const sizeName = (i: number): string => `${scale.sizes[i].users.toLocaleString('en')} users`
  const values = scale.routes.flatMap(r => [r.small, r.large].map((label, i) => ({
    route: label.replace(/^s-\S+ /, '').replace(/ \[.*\]$/, ''),
    size: sizeName(i),
    rps: Math.max(rps(label), 0.1),
    label: `${rps(label) >= 100 ? Math.round(rps(label)).toLocaleString('en') : rps(label).toFixed(1)} req/s`
  })))
  const from = Math.min(...values.map(v => v.rps)) / 2
  const x = { field: 'rps', type: 'quantitative' as const, title: 'req/s (log scale)', scale: { type: 'log' as const, domain: [from, 4 * Math.max(...values.map(v => v.rps))], nice: false }, axis: { format: '~s' } }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Cost against data size: the same routes at two sizes', subtitle: runLine(result), font: FONT },
    width: WIDTH,
    height: { step: 14 },
    config: { font: FONT, axisY: { labelLimit: 0 }, legend: { labelLimit: 0 } },
    data: { values },
    encoding: {
      y: { field: 'route', type: 'nominal', sort: null, title: null },
      yOffset: { field: 'size', type: 'nominal', sort: null },
      x
    },
    layer: [
      { mark: { type: 'bar', tooltip: false }, encoding: { x2: { datum: from }, color: { field: 'size', type: 'nominal', title: null, sort: null, legend: { orient: 'bottom' }, scale: { range: ['#9ecae9', '#4c78a8'] } } } },
      { mark: { type: 'text', align: 'left', dx: 3, font: FONT, fontSize: 10 }, encoding: { text: { field: 'label' } } }
    ]
  }
}

/** p50 and p99 per number of clients, and the queueing bound they are compared with (issue 17). */
function loginLatencySpec (result: ChartInput, levels: LoginLevel[]): TopLevelSpec {
  const series = ['p50', 'p99', 'queueing bound']
  const values = levels.flatMap(l => [
    { clients: l.connections, ms: l.p50Ms, series: series[0] },
    { clients: l.connections, ms: l.p99Ms, series: series[1] },
    { clients: l.connections, ms: l.queueBoundMs, series: series[2] }
  ])
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Login (POST /auth/token, password) latency against concurrency',
      subtitle: [runLine(result), 'queueing bound: max(1, clients / cores) x one argon2 hash\'s wall time'],
      font: FONT
    },
    width: WIDTH,
    height: 280,
    config: { font: FONT, legend: { symbolType: 'stroke', symbolStrokeWidth: 2 } },
    data: { values },
    mark: { type: 'line', point: true, tooltip: false },
    encoding: {
      x: { field: 'clients', type: 'quantitative', title: 'concurrent clients (connections)', scale: { type: 'log', base: 2, nice: false, domain: [levels[0].connections, levels[levels.length - 1].connections] }, axis: { values: levels.map(l => l.connections), format: 'd' } },
      y: { field: 'ms', type: 'quantitative', title: 'latency (ms)' },
      color: { field: 'series', type: 'nominal', title: null, legend: { orient: 'bottom' }, scale: { domain: series, range: ['#4c78a8', '#e45756', '#333333'] } },
      strokeDash: { field: 'series', type: 'nominal', scale: { domain: series, range: [[1, 0], [1, 0], [5, 4]] } }
    }
  }
}

function runLine (result: ChartInput): string {
  const seconds = `${result.durationSeconds} s per scenario${result.rounds > 1 ? `, medians of ${result.rounds} rounds` : ''}`
  return `${result.date.slice(0, 10)}, node ${result.node}, ${result.cores} cores, ${seconds} (npm run bench)`
}

async function render (spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}
