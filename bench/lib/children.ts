// The service under test and the baseline server, as child processes of the harness on 127.0.0.1.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { imageRuntime } from '../../scripts/image-runtime.js'
import { log } from './progress.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BENCH = new URL('..', import.meta.url)
const READY_TIMEOUT_MS = 30_000
const READY_POLL_MS = 10

// As the image runs node (the Dockerfile's CMD flags and NODE_OPTIONS): both servers get the same, so they compare fairly.
export const RUNTIME = imageRuntime()

export interface Server {
  name: string
  child: ChildProcess
  pid: number
  url: string
  spawnedAt: number
  /** ms from spawn to the JSON line with the port. */
  listeningMs: number
}

const children = new Set<ChildProcess>()
export const alive = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null

/** A child the harness started some other way: killed with the others if the harness exits. */
export function track (child: ChildProcess): void {
  children.add(child)
}

// Whatever happens (an exception, process.exit), no server outlives the harness.
process.on('exit', () => {
  for (const child of children) if (alive(child)) child.kill('SIGKILL')
})

/** The service's environment: the bench database, migrated at start, and a signing key unless one is set. */
export function serviceEnvironment (databaseUrl: string): { env: NodeJS.ProcessEnv, signingKey: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', DATABASE_URL: databaseUrl, MIGRATE_ON_START: 'true', METRICS_PORT: '0' }
  if ([env.JWT_PRIVATE_KEY, env.JWT_PRIVATE_KEY_FILE, env.JWT_SECRET].some(v => v !== undefined && v !== '')) {
    return { env, signingKey: 'from the environment' }
  }
  // What a production deploy uses (see docs/deployment.md): an Ed25519 key.
  env.JWT_PRIVATE_KEY = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  return { env, signingKey: 'Ed25519 (EdDSA), generated for the run' }
}

// The service runs compiled, as the image runs it: no TypeScript loader in the measured process.
export function compileService (): void {
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
}

/** Starts `node bench/<script>` (plain JavaScript) and waits (at most 30 s) for its {"port":N} line. */
export async function startServer (name: string, script: string, env: NodeJS.ProcessEnv): Promise<Server> {
  const spawnedAt = performance.now()
  const child = spawn(process.execPath, [...RUNTIME.flags, fileURLToPath(new URL(script, BENCH))], {
    cwd: ROOT,
    env: { ...env, NODE_OPTIONS: RUNTIME.nodeOptions },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  children.add(child)
  const stdout = child.stdout
  if (stdout === null || child.pid === undefined) throw new Error(`${name}: could not spawn`)
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    let found = false
    const timer = setTimeout(() => { reject(new Error(`${name} did not listen within ${READY_TIMEOUT_MS / 1000} s`)) }, READY_TIMEOUT_MS)
    stdout.on('data', (chunk: Buffer) => {
      // After the port line the server's stdout is its (warn-level) log: passed on to stderr, off the report.
      if (found) { process.stderr.write(chunk); return }
      out += chunk.toString()
      const lines = out.split('\n')
      const line = lines.find(l => l.startsWith('{"port"'))
      if (line === undefined) return
      found = true
      clearTimeout(timer)
      const rest = lines.filter(l => l !== line).join('\n')
      if (rest.trim() !== '') process.stderr.write(rest + '\n')
      resolve((JSON.parse(line) as { port: number }).port)
    })
    child.once('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`${name} exited (${code ?? signal}) before listening`)) })
    child.once('error', (error) => { clearTimeout(timer); reject(error) })
  })
  return { name, child, pid: child.pid, url: `http://127.0.0.1:${port}`, spawnedAt, listeningMs: performance.now() - spawnedAt }
}

/** ms from spawn until GET /health/ready answers 200, at most 30 s after the spawn. */
export async function waitReady (server: Server): Promise<number> {
  const deadline = server.spawnedAt + READY_TIMEOUT_MS
  while (performance.now() < deadline) {
    if (!alive(server.child)) throw new Error(`${server.name} exited before it was ready`)
    try {
      const res = await fetch(`${server.url}/health/ready`, { signal: AbortSignal.timeout(1000) })
      await res.arrayBuffer()
      if (res.status === 200) return performance.now() - server.spawnedAt
    } catch {}
    await sleep(READY_POLL_MS)
  }
  throw new Error(`${server.name}: GET /health/ready did not answer 200 within ${READY_TIMEOUT_MS / 1000} s`)
}

/** SIGTERM, then SIGKILL if it has not exited within graceMs. */
export async function stopServer (server: Server, graceMs = 5000): Promise<void> {
  const { child } = server
  if (!alive(child)) return
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  const timer = new AbortController()
  child.kill('SIGTERM')
  const inTime = await Promise.race([exited.then(() => true), sleep(graceMs, false, { signal: timer.signal }).catch(() => false)])
  timer.abort()
  if (!inTime && alive(child)) {
    log(`pid ${child.pid} did not exit on SIGTERM within ${graceMs} ms: SIGKILL`)
    child.kill('SIGKILL')
    const killTimer = new AbortController()
    await Promise.race([exited, sleep(2000, undefined, { signal: killTimer.signal }).catch(() => {})])
    killTimer.abort()
  }
  children.delete(child)
}
