import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readdirSync } from 'node:fs'
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { t as tap, test } from 'tap'
import { DataDirLockedError, LOCK_FILE, lockDataDir } from '../src/db/data-dir-lock.js'
import { eventually, freePort, REPO_ROOT, runToExit, spawnServer, startServer, stopServer, tempDir, type Running } from './helper.js'

// The tests below share nothing (each its own directory, ports and processes), and most of their time is spent waiting
// for a spawned server: three at a time.
tap.jobs = 3

const PASSWORD = 'Lantern-Quarry-8841-Meadow'
const lockFile = (dir: string): string => join(dir, LOCK_FILE)
const lockHolder = async (dir: string): Promise<string> => await readFile(lockFile(dir), 'utf8')

async function registerOver (url: string, username: string): Promise<number> {
  const res = await fetch(`${url}/auth/register`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, email: `${username}@example.com`, password: PASSWORD })
  })
  return res.status
}

async function loginOver (url: string, username: string): Promise<number> {
  const res = await fetch(`${url}/auth/token`, { method: 'POST', body: new URLSearchParams({ username, password: PASSWORD }) })
  return res.status
}

/** A GET's status, or the connection error's code when nothing answers yet. */
async function statusOf (url: string): Promise<number | string> {
  return await fetch(url).then(res => res.status, (error: Error & { cause?: { code?: string } }) => error.cause?.code ?? error.message)
}

/** The pid of a process that has exited and been reaped: what a lock left by a crash names. */
async function deadPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await once(child, 'exit')
  return child.pid as number
}

/** A live process that is not this one, killed when the test ends. */
function liveProcess (t: Parameters<typeof tempDir>[0]): ChildProcess {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return child
}

test('lockDataDir: when the directory is free, then the lock file holds this pid, a second lock here is refused, and release frees it', async (t) => {
  const dir = await tempDir(t)
  const release = await lockDataDir(dir)
  t.equal(await lockHolder(dir), `${process.pid}\n`)
  const refused = await lockDataDir(dir).catch((error: unknown) => error)
  t.type(refused, DataDirLockedError, 'the same directory twice in one process is refused too')
  t.match((refused as Error).message, `(pid ${process.pid}) is using DATA_DIR=${dir}: stop it, or set DATA_DIR to another directory`)
  await release()
  t.notOk(existsSync(lockFile(dir)), 'release removes the lock file')
  const again = await lockDataDir(dir)
  t.equal(await lockHolder(dir), `${process.pid}\n`, 'and the directory can be locked again')
  await again()
})

test('lockDataDir: when the lock names a live process, then DataDirLockedError names DATA_DIR and that pid, and the lock is left alone', async (t) => {
  const dir = await tempDir(t)
  const holder = liveProcess(t)
  await writeFile(lockFile(dir), `${holder.pid}\n`)
  const refused = await lockDataDir(dir).catch((error: unknown) => error)
  t.type(refused, DataDirLockedError)
  t.equal((refused as DataDirLockedError).pid, holder.pid)
  t.equal((refused as Error).message, `another auth-service process (pid ${holder.pid}) is using DATA_DIR=${dir}: stop it, or set DATA_DIR to another directory`)
  t.equal(await lockHolder(dir), `${holder.pid}\n`, 'the holder keeps its lock')
})

test('lockDataDir: when the lock names a process that is gone, or was never written and is old, then it is taken over', async (t) => {
  const dir = await tempDir(t)
  await writeFile(lockFile(dir), `${await deadPid()}\n`)
  const release = await lockDataDir(dir)
  t.equal(await lockHolder(dir), `${process.pid}\n`, 'a crashed holder\'s lock is taken over')
  await release()

  // A writer that died between creating the file and writing its pid.
  await writeFile(lockFile(dir), '')
  const past = new Date(Date.now() - 60_000)
  await utimes(lockFile(dir), past, past)
  const releaseAgain = await lockDataDir(dir)
  t.equal(await lockHolder(dir), `${process.pid}\n`, 'an empty lock file from long ago is taken over')
  await releaseAgain()
  t.same(readdirSync(dir), [], 'no lock or takeover file is left behind')
})

test('lockDataDir: when another live process is taking the same stale lock over, then this one removes nothing and is refused once that process holds the lock', async (t) => {
  const dir = await tempDir(t)
  const stale = `${await deadPid()}\n`
  await writeFile(lockFile(dir), stale)
  const other = liveProcess(t)
  await writeFile(`${lockFile(dir)}.takeover`, `${other.pid}\n`)
  let settled = false
  const outcome = lockDataDir(dir).then(async (release) => { settled = true; await release(); return 'locked' }, (error: Error) => { settled = true; return error })
  await sleep(300)
  t.notOk(settled, 'it waits while the takeover is under way')
  t.equal(await lockHolder(dir), stale, 'and leaves the stale lock to the process taking it over')
  // That process ends its takeover: its own lock in place of the stale one, and the takeover file gone.
  await writeFile(lockFile(dir), `${other.pid}\n`)
  await rm(`${lockFile(dir)}.takeover`)
  const result = await outcome
  t.type(result, DataDirLockedError, 'then it finds that lock held')
  t.equal((result as DataDirLockedError).pid, other.pid)
  t.equal(await lockHolder(dir), `${other.pid}\n`, 'and leaves it alone')
})

test('lockDataDir: when a process died in the middle of a takeover, then its takeover file is removed and the stale lock taken over', async (t) => {
  const dir = await tempDir(t)
  await writeFile(lockFile(dir), `${await deadPid()}\n`)
  await writeFile(`${lockFile(dir)}.takeover`, `${await deadPid()}\n`)
  const release = await lockDataDir(dir)
  t.equal(await lockHolder(dir), `${process.pid}\n`)
  await release()
  t.same(readdirSync(dir), [], 'no lock or takeover file is left behind')
})

// Each child locks at the instant it is told and holds the lock until its stdin ends.
const LOCKER = `
import { lockDataDir } from ${JSON.stringify(join(REPO_ROOT, 'src', 'db', 'data-dir-lock.ts'))}
import { createInterface } from 'node:readline'
const lines = createInterface({ input: process.stdin })
console.log('ready')
let release
for await (const line of lines) {
  if (!line.startsWith('go ')) continue
  // Spin until the agreed instant, so that all of them read the stale lock as nearly together as they can.
  const at = Number(line.slice(3))
  while (Date.now() < at) {}
  try {
    release = await lockDataDir(process.argv[1])
    console.log('locked')
  } catch (error) {
    console.log(error.name === 'DataDirLockedError' ? 'refused ' + error.pid : 'error ' + error.message)
  }
}
await release?.()
`

test('lockDataDir: when several processes find the same stale lock at once, then exactly one takes it over and the others are refused naming it', async (t) => {
  const dir = await tempDir(t)
  await writeFile(lockFile(dir), `${await deadPid()}\n`)
  const lockers = Array.from({ length: 4 }, () => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', LOCKER, dir], { stdio: ['pipe', 'pipe', 'inherit'] }))
  t.teardown(() => { for (const child of lockers) if (child.exitCode === null) child.kill('SIGKILL') })
  const said = lockers.map(child => {
    const lines: string[] = []
    child.stdout?.on('data', (chunk: Buffer) => { lines.push(...chunk.toString().split('\n').filter(Boolean)) })
    return lines
  })
  await eventually(() => said.every(lines => lines.includes('ready')), { timeoutMs: 60_000, what: 'every locker loaded' })
  const at = Date.now() + 300
  for (const child of lockers) child.stdin?.write(`go ${at}\n`)
  await eventually(() => said.every(lines => lines.length === 2), { timeoutMs: 30_000, what: () => `every locker answered: ${JSON.stringify(said)}` })

  const winners = lockers.filter((_, i) => said[i][1] === 'locked')
  t.equal(winners.length, 1, `exactly one took the lock over: ${JSON.stringify(said)}`)
  const winner = winners[0]?.pid as number
  t.equal(await lockHolder(dir), `${winner}\n`, 'the lock file names it')
  t.same(said.map(lines => lines[1]).filter(line => line !== 'locked'), Array.from({ length: 3 }, () => `refused ${winner}`), 'the others were refused, naming it')
  await Promise.all(lockers.map(async child => { child.stdin?.end(); if (child.exitCode === null) await once(child, 'exit') }))
  t.notOk(existsSync(lockFile(dir)), 'the winner released the lock on its way out')
})

test('npm start on the embedded database: a second server, a SIGKILL, a busy port', async (t) => {
  const dataDir = await tempDir(t)
  const env = { DATA_DIR: dataDir, LOG_LEVEL: 'info' }
  const first = await startServer(env)
  let current: Running = first
  // Here, not in the subtests: a subtest's teardown runs when it ends, and the next one uses its server.
  t.teardown(() => { for (const server of [first, current]) if (server.child.exitCode === null) server.child.kill('SIGKILL') })
  t.equal(await registerOver(first.url, 'before_second'), 201)

  await t.test('when a second server starts on the same DATA_DIR, then it exits 1 naming DATA_DIR and the first pid, and the first keeps serving its data', async (t) => {
    const second = await runToExit(spawnServer(env), 60_000)
    t.equal(second.code, 1)
    t.match(second.output, `another auth-service process (pid ${first.child.pid}) is using DATA_DIR=${dataDir}: stop it, or set DATA_DIR to another directory`)
    t.notMatch(second.output, /\n\s+at /, 'no stack trace')
    t.equal(await lockHolder(dataDir), `${first.child.pid}\n`, 'the lock still names the first server')
    t.equal(await registerOver(first.url, 'after_second'), 201, 'the first still registers')
    t.equal(await loginOver(first.url, 'before_second'), 200, 'and still has the user registered before')
  })

  await t.test('when the server was SIGKILLed, then the next start takes its stale lock over and serves the same data', async (t) => {
    const exited = once(first.child, 'exit')
    process.kill(first.child.pid as number, 'SIGKILL')
    await exited
    t.equal(await lockHolder(dataDir), `${first.child.pid}\n`, 'the killed server left its lock behind')
    current = await startServer(env)
    t.equal(await lockHolder(dataDir), `${current.child.pid}\n`, 'the new server holds the lock')
    t.equal(await loginOver(current.url, 'before_second'), 200, 'the user registered before the refused start logs in')
    t.equal(await loginOver(current.url, 'after_second'), 200, 'and so does the one registered after it')
  })

  await t.test('when a second server starts on a busy PORT with the same DATA_DIR, then it exits 1 saying so and never reaches the data', async (t) => {
    const port = new URL(current.url).port
    const second = await runToExit(spawnServer({ ...env, PORT: port }), 60_000)
    t.equal(second.code, 1)
    t.match(second.output, `Port ${port} on 127.0.0.1 is in use: set PORT to a free port (or stop the process using it)`)
    t.notMatch(second.output, /DATA_DIR|database ready/, 'it stopped before the database: not even the lock was tried')
    t.equal(await lockHolder(dataDir), `${current.child.pid}\n`, 'the lock still names the running server')
    t.equal(await registerOver(current.url, 'after_busy_port'), 201, 'which still serves')
    t.equal(await stopServer(current), 0, 'and stops cleanly')
    t.notOk(existsSync(lockFile(dataDir)), 'releasing its lock')
  })
})

test('npm start: when DATABASE_URL points at a closed port, then liveness answers 200 and readiness 503 while it retries, and after DATABASE_START_TIMEOUT_SECONDS it exits 1 naming DATABASE_URL without its password', async (t) => {
  const password = 'Pw-only-in-the-url-6Rk2'
  const databasePort = await freePort()
  const base = `http://127.0.0.1:${await freePort()}`
  const child = spawnServer({ DATABASE_URL: `postgres://app:${password}@127.0.0.1:${databasePort}/auth`, DATABASE_START_TIMEOUT_SECONDS: '3', PORT: new URL(base).port, LOG_LEVEL: 'info' })
  const exited = runToExit(child, 60_000)
  await eventually(async () => await statusOf(`${base}/health/live`) === 200 || child.exitCode !== null, { timeoutMs: 60_000, what: 'liveness answering' })
  const ready = await fetch(`${base}/health/ready`)
  t.equal(ready.status, 503, 'not ready')
  t.match(ready.headers.get('content-type'), /^application\/problem\+json/)
  t.equal(ready.headers.get('retry-after'), '1')
  t.same(await ready.json(), { type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'The service is starting; retry shortly', code: 'starting' })
  t.equal((await fetch(`${base}/auth/register`, { method: 'POST' })).status, 503, 'nor is any route served')

  const { code, output } = await exited
  t.equal(code, 1)
  t.match(output, `Could not connect to DATABASE_URL=postgres://app:***@127.0.0.1:${databasePort}/auth within 3 s (DATABASE_START_TIMEOUT_SECONDS): ECONNREFUSED`)
  t.ok(output.split('\n').filter(line => line.includes('database not reachable yet')).length >= 2, 'each failed try was a warning')
  t.notMatch(output, password, 'the password never reached the output')
  t.notMatch(output, /\n\s+at /, 'no stack trace')
})

test('npm start: when SIGTERM arrives while it waits for DATABASE_URL, then it exits 0 at once', async (t) => {
  const base = `http://127.0.0.1:${await freePort()}`
  const child = spawnServer({ DATABASE_URL: `postgres://app@127.0.0.1:${await freePort()}/auth`, DATABASE_START_TIMEOUT_SECONDS: '300', PORT: new URL(base).port, LOG_LEVEL: 'info' })
  const exited = runToExit(child, 60_000)
  await eventually(async () => await statusOf(`${base}/health/live`) === 200 || child.exitCode !== null, { timeoutMs: 60_000, what: 'liveness answering' })
  child.kill('SIGTERM')
  const { code, output } = await exited
  t.equal(code, 0, output)
  t.match(output, /"msg":"shutting down before the service listens"/)
  t.not(await statusOf(`${base}/health/live`), 200, 'the port is free again')
})

const PG_BIN = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort((a, b) => Number(a) - Number(b)).map(v => `/usr/lib/postgresql/${v}/bin`).pop() : undefined

test('npm start: when PostgreSQL starts only after the server, then the server waits for it and serves', async (t) => {
  t.ok(PG_BIN !== undefined && existsSync(join(PG_BIN, 'pg_ctl')), 'PostgreSQL binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)')
  const pgPort = await freePort()
  const pgDir = await mkdtemp(join(tmpdir(), 'auth-startup-pg-'))
  const asPostgres = (command: string): [string, string[]] => process.getuid?.() === 0 ? ['su', ['postgres', '-s', '/bin/sh', '-c', command]] : ['sh', ['-c', command]]
  t.teardown(async () => {
    if (existsSync(join(pgDir, 'data', 'postmaster.pid'))) {
      await promisify(execFile)(...asPostgres(`${PG_BIN ?? ''}/pg_ctl -D ${pgDir}/data -m fast stop`)).catch(() => {})
    }
    await rm(pgDir, { recursive: true, force: true })
  })

  const server = spawnServer({ DATABASE_URL: `postgres://postgres@127.0.0.1:${pgPort}/postgres`, DATABASE_START_TIMEOUT_SECONDS: '120', PORT: String(await freePort()), LOG_LEVEL: 'info' })
  t.teardown(() => { if (server.exitCode === null) server.kill('SIGKILL') })
  let output = ''
  server.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  server.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  await eventually(() => output.includes('database not reachable yet') || server.exitCode !== null, { timeoutMs: 60_000, what: 'a first failed try' })
  t.equal(server.exitCode, null, 'still waiting')

  // The CI's own way of starting a throwaway cluster, on the port the server was given.
  const started = await promisify(execFile)(join(REPO_ROOT, '.ci', 'start-postgres.sh'), [String(pgPort)], { env: { ...process.env, PG_DIR: pgDir } })
  t.equal(started.stdout.trim(), `postgres://postgres@127.0.0.1:${pgPort}/postgres`)
  await eventually(() => /Server listening at http:\/\/127\.0\.0\.1:\d+/.test(output) || server.exitCode !== null, { timeoutMs: 60_000, what: () => `the server listening: ${output}` })
  const url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1] as string
  t.equal(await statusOf(`${url}/health/ready`), 200, 'ready')
  t.equal(await registerOver(url, 'after_the_wait'), 201, 'and serving')
  const exited = once(server, 'exit')
  server.kill('SIGTERM')
  t.equal((await exited)[0], 0, 'it stops cleanly')
})
