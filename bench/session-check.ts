// What the ended-session check costs on a protected route: the same route with and without it, measured
// alternately in one run against one server process (npm run bench:session-check [-- seconds rounds]).
// Set DATABASE_URL to run the service on PostgreSQL; otherwise it uses the embedded database.
import { spawn } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'

const seconds = Number(process.argv[2] ?? 5)
const rounds = Number(process.argv[3] ?? 3)
const connections = 10

const server = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./session-check-server.ts', import.meta.url))], {
  env: { ...process.env, NODE_ENV: 'development', METRICS_PORT: '0' },
  stdio: ['ignore', 'pipe', 'inherit']
})
const ready = await new Promise<{ port: number, token: string, ended: number }>((resolve, reject) => {
  let out = ''
  const timer = setTimeout(() => { reject(new Error('server did not start within 60 s')) }, 60_000)
  server.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString()
    const line = out.split('\n').find(l => l.startsWith('{"port"'))
    if (line !== undefined) { clearTimeout(timer); resolve(JSON.parse(line)) }
  })
  server.on('exit', (code) => { reject(new Error(`server exited ${code}`)) })
})

async function run (path: string): Promise<{ rps: number, p50: number, p99: number, errors: number }> {
  const result = await autocannon({
    url: `http://127.0.0.1:${ready.port}${path}`,
    connections,
    duration: seconds,
    headers: { authorization: `Bearer ${ready.token}` }
  })
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const variants = { 'token only': '/bench/token-only', 'token + session check': '/bench/with-session-check' }
const samples: Record<string, Array<Awaited<ReturnType<typeof run>>>> = {}
try {
  await run(variants['token only']) // warm-up, discarded
  for (let round = 0; round < rounds; round++) {
    for (const [name, path] of Object.entries(variants)) (samples[name] ??= []).push(await run(path))
  }
} finally {
  server.kill('SIGTERM')
}

const rows = Object.entries(samples).map(([name, s]) => ({
  name,
  rps: median(s.map(x => x.rps)),
  p50: median(s.map(x => x.p50)),
  p99: median(s.map(x => x.p99)),
  errors: s.reduce((n, x) => n + x.errors, 0)
}))
const base = rows[0].rps
console.log(`protected route, ${connections} connections, ${rounds} alternating rounds of ${seconds} s, ${ready.ended} ended sessions held, ${process.env.DATABASE_URL !== undefined ? 'PostgreSQL' : 'embedded database'}`)
console.log('| variant | req/s (median) | p50 ms | p99 ms | errors + non-2xx | ratio to token only |')
console.log('|---|---|---|---|---|---|')
for (const r of rows) console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.errors} | ${(r.rps / base).toFixed(3)} |`)
await mkdir(new URL('./results/', import.meta.url), { recursive: true })
await writeFile(new URL('./results/session-check.json', import.meta.url), JSON.stringify({ date: new Date().toISOString(), seconds, rounds, connections, ended: ready.ended, rows }, null, 2))
