// A/B of two builds of the service side by side: node bench/compare.mjs <checkout A> <checkout B> [rounds]
// Each checkout must have been built (npm run build: its bench/server.mjs runs over its dist/). Both servers run at
// once on 127.0.0.1, each on a database of its own on DATABASE_URL's server (created and dropped), with the image's
// node flags; the protected probe route and GET /users/me are measured in alternating rounds (A B, then B A), 3 s
// each at 10 connections, and the medians compared. For "no regression" claims on a shared box, where two harness
// runs minutes apart differ by more than the change being judged.
import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { once } from 'node:events'
import autocannon from 'autocannon'
import postgres from 'postgres'

const [dirA, dirB, roundsArg] = process.argv.slice(2)
const PG = process.env.DATABASE_URL
if (dirA === undefined || dirB === undefined || PG === undefined) {
  console.error('usage: DATABASE_URL=postgres://... node bench/compare.mjs <checkout A> <checkout B> [rounds (default 6, at most 20)]')
  process.exit(2)
}
const ROUNDS = Math.min(20, Math.max(1, Number(roundsArg ?? 6)))
const sides = { base: dirA, main: dirB }
const databaseUrl = (name) => { const url = new URL(PG); url.pathname = `/ab_${name}`; return url.toString() }
const admin = postgres(PG, { max: 1, onnotice: () => {} })
const key = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
const servers = {}
for (const [name, dir] of Object.entries(sides)) {
  await admin.unsafe(`drop database if exists ab_${name} with (force)`)
  await admin.unsafe(`create database ab_${name}`)
  const child = spawn(process.execPath, ['--no-memory-reducer', '--heap-growing-percent=50', 'bench/server.mjs'], {
    cwd: dir, env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=4', NODE_ENV: 'production', DATABASE_URL: databaseUrl(name), MIGRATE_ON_START: 'true', JWT_PRIVATE_KEY: key, METRICS_PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit']
  })
  // The port line may come after warn-level log lines (SMTP_URL not set, for one).
  const port = await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk.toString()
      const line = out.split('\n').find(l => l.startsWith('{"port"'))
      if (line !== undefined) resolve(JSON.parse(line).port)
    })
    child.once('exit', (code) => { reject(new Error(`${name} exited (${code}) before listening`)) })
  })
  const url = `http://127.0.0.1:${port}`
  const body = JSON.stringify({ username: 'abuser', email: 'ab@example.com', password: 'ab password correct horse' })
  await fetch(`${url}/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  const tok = await (await fetch(`${url}/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).json()
  servers[name] = { child, url, token: tok.access_token }
}
const run = async (name, path, seconds) => {
  const r = await autocannon({ url: servers[name].url + path, connections: 10, duration: seconds, headers: { authorization: `Bearer ${servers[name].token}` } })
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`${name} ${path}: ${r.non2xx} non-2xx`)
  return r.requests.average
}
const median = xs => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2 }
for (const path of ['/bench/protected', '/users/me']) for (const name of ['base', 'main']) await run(name, path, 2)
const results = {}
for (const path of ['/bench/protected', '/users/me']) {
  results[path] = { base: [], main: [] }
  for (let i = 0; i < ROUNDS; i++) {
    const order = i % 2 === 0 ? ['base', 'main'] : ['main', 'base']
    for (const name of order) results[path][name].push(await run(name, path, 3))
  }
  const b = median(results[path].base); const m = median(results[path].main)
  console.log(`${path}: A ${results[path].base.map(Math.round).join(' ')} | B ${results[path].main.map(Math.round).join(' ')} | medians ${Math.round(b)} vs ${Math.round(m)} req/s, B/A ${(m / b).toFixed(3)}`)
}
for (const { child } of Object.values(servers)) { child.kill('SIGTERM'); await once(child, 'exit') }
for (const name of Object.keys(sides)) await admin.unsafe(`drop database if exists ab_${name} with (force)`)
await admin.end()
