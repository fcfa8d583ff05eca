// Redraws a saved run's charts without rerunning it: npm run bench:chart -- <results.json> [--out dir]
//
// Without --out the SVGs go beside the results file (<name>-throughput.svg, <name>-login-latency.svg), as the run
// writes them; with --out dir they are dir/throughput.svg and dir/login-latency.svg, the names docs/performance.md
// shows. Exit code 2 on bad arguments or a file that is not a bench result.
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { chartPathsBeside, writeCharts, type ChartInput } from './lib/chart.js'

const usage = 'usage: npm run bench:chart -- <bench/results/....json> [--out dir]'

function fail (message: string): never {
  console.error(`bench:chart: ${message}\n${usage}`)
  process.exit(2)
}

let parsed
try {
  parsed = parseArgs({ options: { out: { type: 'string' } }, allowPositionals: true })
} catch (error) {
  fail((error as Error).message)
}
const [file, ...extra] = parsed.positionals
if (file === undefined || extra.length > 0) fail('one results file, please')

let result: ChartInput
try {
  result = JSON.parse(await readFile(file, 'utf8')) as ChartInput
} catch (error) {
  fail(`cannot read ${file}: ${(error as Error).message}`)
}
if (!Array.isArray(result.rows) || result.rows.length === 0 || typeof result.date !== 'string') fail(`${file} is not a bench result (no rows)`)

const out = parsed.values.out
if (out !== undefined) await mkdir(out, { recursive: true })
const paths = out === undefined ? chartPathsBeside(file) : { throughput: join(out, 'throughput.svg'), loginLatency: join(out, 'login-latency.svg'), scale: join(out, 'scale.svg') }
const written = await writeCharts(result, paths)
console.log(written.join('\n'))
if (result.loginLevels === undefined) console.error('bench:chart: no loginLevels in this result (a run before they were measured): no login latency chart')
