import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'tap'
import type { Browser } from 'playwright-core'
import { drawCharts, type ChartInput } from '../bench/lib/chart.js'
import { loginLevels, type Row } from '../bench/lib/report.js'
import { scaleLabel } from '../bench/lib/scale.js'
import { CONNECTIONS, LOGIN_LEVELS, loginLabel } from '../bench/lib/scenarios.js'
import { launchBrowser } from './browser.js'
import { REPO_ROOT, runToExit, tempDir } from './helper.js'

const ARGON2 = { cores: 2, wallMsPerHash: 14.5 }

// Figures of the shape a 2-core run gives; labels as the harness writes them (the charts and report find rows by label).
const FIGURES: Array<[string, number, number, number]> = [
  ['1 baseline GET / (bare Fastify)', 25426.7, 0, 1],
  ['2 GET /bench/protected', 14065.3, 0, 1],
  ['3 GET /users/me', 14873.3, 0, 2],
  ['v2 downstream GET /verified (verifier plugin)', 18957.3, 0, 1],
  [loginLabel(CONNECTIONS), 61, 157, 210],
  [loginLabel(1), 66.2, 15, 19],
  [loginLabel(2), 118.4, 16, 24],
  [loginLabel(4), 121.9, 32, 45],
  ['6 POST /auth/token refresh_token (rotation)', 194.7, 49, 84],
  ['7 storm: POST /auth/token password (20 conn) & <friends>', 30, 624, 895]
]

const ROWS: Row[] = FIGURES.map(([scenario, rps, p50Ms, p99Ms]) => ({
  scenario, rps, p50Ms, p99Ms, errors: 0, non2xx: 0, timeouts: 0, ok: 100, serverCpuPercent: 95, serverSystemCpuPercent: 20, peakRssMb: 150, loadGeneratorCpuPercent: 60, ratioToBaseline: rps / 25426.7
}))

const RESULT: ChartInput = {
  date: '2026-12-01T12:41:46.377Z',
  node: 'v22.23.3',
  cores: ARGON2.cores,
  durationSeconds: 2,
  rounds: 1,
  rows: ROWS,
  loginLevels: loginLevels(ROWS, ARGON2)
}

interface Parsed { errors: number, root: string, texts: string[] }

/** Opened as an SVG document: Chromium's XML parser is strict, an unbalanced tag or a bare '&' gives a parsererror. */
async function parseSvg (browser: Browser, svg: string): Promise<Parsed> {
  const page = await browser.newPage()
  try {
    await page.goto(`data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`)
    return {
      errors: await page.locator('parsererror').count(),
      root: await page.locator(':root').evaluate(e => `${e.namespaceURI ?? ''} ${e.localName}`),
      texts: await page.locator('text').allTextContents()
    }
  } finally {
    await page.close()
  }
}

test('loginLevels: when login ran at 1, 2, 4 and 10 clients on 2 cores, then the bound is one hash up to 2 clients and clients / cores hashes above', async (t) => {
  const levels = loginLevels(ROWS, ARGON2)
  t.same(levels.map(l => l.connections), LOGIN_LEVELS)
  t.same(levels.map(l => l.queueBoundMs), [14.5, 14.5, 29, 72.5])
  t.same(levels.map(l => l.p99Ms), [19, 24, 45, 210])
  t.equal(levels[3].p99OfBound, 210 / 72.5)
  t.same(loginLevels(ROWS.filter(r => r.scenario !== loginLabel(2)), ARGON2).map(l => l.connections), [1, 4, 10], 'a level that did not run is left out')
})

test('bench charts: when a run is drawn, then both SVGs are well-formed and name every scenario, its req/s and each login level', async (t) => {
  const charts = await drawCharts(RESULT)
  const browser = await launchBrowser(t)

  const throughput = await parseSvg(browser, charts.throughput)
  t.equal(throughput.errors, 0, 'the throughput SVG parses as XML')
  t.equal(throughput.root, 'http://www.w3.org/2000/svg svg')
  for (const row of ROWS) t.ok(throughput.texts.includes(row.scenario), `names '${row.scenario}' in full`)
  t.ok(throughput.texts.includes('25,427 req/s, 1.000'), 'the baseline bar carries its req/s and ratio')
  t.ok(throughput.texts.includes('61.0 req/s, 0.002'), 'so does the login bar')
  t.ok(throughput.texts.includes('Throughput per scenario against the baseline'))

  t.ok(charts.loginLatency !== undefined, 'a login latency chart, the result having login levels')
  const latency = await parseSvg(browser, charts.loginLatency ?? '')
  t.equal(latency.errors, 0, 'the login latency SVG parses as XML')
  t.equal(latency.root, 'http://www.w3.org/2000/svg svg')
  for (const label of ['p50', 'p99', 'queueing bound', ...LOGIN_LEVELS.map(String)]) t.ok(latency.texts.includes(label), `shows '${label}'`)

  const { loginLevels: _, ...older } = RESULT
  t.equal((await drawCharts(older)).loginLatency, undefined, 'a result from before the login levels gets the throughput chart alone')
})

test('bench charts: when a run has scale scenarios, then a third SVG shows each route at both sizes, and the throughput chart leaves them out', async (t) => {
  const sizes = [{ name: 'small', users: 1000 }, { name: 'large', users: 1_000_000 }]
  const routes = [['login', 'POST /auth/token password (login)', 74, 71], ['me', 'GET /users/me', 11956, 11420]] as const
  const scaleRows: Row[] = routes.flatMap(([id, what, small, large]) => sizes.map(size => ({
    ...ROWS[1], scenario: scaleLabel(id, size), rps: size.name === 'small' ? small : large, ratioToBaseline: 0
  })))
  const result: ChartInput = {
    ...RESULT,
    rows: [...ROWS, ...scaleRows],
    scale: { sizes, routes: routes.map(([id]) => ({ route: id, small: scaleLabel(id, sizes[0]), large: scaleLabel(id, sizes[1]) })) }
  }
  const charts = await drawCharts(result)
  const browser = await launchBrowser(t)
  t.ok(charts.scale !== undefined, 'a scale chart')
  const scale = await parseSvg(browser, charts.scale ?? '')
  t.equal(scale.errors, 0, 'the scale SVG parses as XML')
  for (const text of ['POST /auth/token password (login)', 'GET /users/me', '1,000 users', '1,000,000 users', '11,956 req/s', '11,420 req/s', '74.0 req/s']) {
    t.ok(scale.texts.includes(text), `shows '${text}'`)
  }
  const throughput = await parseSvg(browser, charts.throughput)
  t.notOk(throughput.texts.some(text => text.startsWith('s-')), 'the throughput chart has no scale rows')
  t.equal((await drawCharts(RESULT)).scale, undefined, 'a result without scale scenarios gets no scale chart')
})

test('npm run bench:chart: when given a saved result and --out, then it writes both SVGs there; given a file that is no result, then exit 2', async (t) => {
  const dir = await tempDir(t)
  const saved = join(dir, 'bench-saved.json')
  await writeFile(saved, JSON.stringify(RESULT))
  const chart = (...args: string[]) => spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench', 'chart.ts'), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })

  const out = join(dir, 'docs-performance')
  const drawn = await runToExit(chart(saved, '--out', out))
  t.equal(drawn.code, 0, drawn.output)
  t.same(drawn.output.trim().split('\n'), [join(out, 'throughput.svg'), join(out, 'login-latency.svg')])
  t.match(await readFile(join(out, 'login-latency.svg'), 'utf8'), /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)

  const beside = await runToExit(chart(saved))
  t.equal(beside.code, 0, beside.output)
  t.match(await readFile(join(dir, 'bench-saved-throughput.svg'), 'utf8'), /1 baseline GET \/ \(bare Fastify\)/)

  const notResult = join(dir, 'package.json')
  await writeFile(notResult, JSON.stringify({ name: 'x' }))
  const refused = await runToExit(chart(notResult))
  t.equal(refused.code, 2)
  t.match(refused.output, /is not a bench result/)
})
