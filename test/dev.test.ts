import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { t as root, test } from 'tap'
import { DEVELOPMENT_DEFAULTS, loadConfig } from '../src/config.js'
import { prettyLogs } from '../src/logger.js'
import { envFileProblems, loadEnvFile } from '../src/startup/env-file.js'
import { docsUrl, signingKeySource } from '../src/startup/start-up-report.js'
import { eventually, freePort, MIGRATE, REPO_ROOT, runToExit, SERVER, TEST_SECRET, tempDir } from './helper.js'

// Real processes started eight times over, two of them opening a new embedded database: past tap's 180 s on a busy machine.
root.setTimeout(420_000)

const BASE_ENV = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' }
const STARTUP_MS = 180_000

/** A process started in `cwd` with only the given environment: no HOST, PORT or NODE_ENV unless named. */
function spawnIn (cwd: string, command: string, args: string[], env: Record<string, string> = {}, detached = false): ChildProcess {
  return spawn(command, args, { cwd, env: { ...BASE_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached })
}

const alive = (pid: number): boolean => {
  try { process.kill(pid, 0); return true } catch { return false }
}

/** The JSON lines written so far, each parsed; a line that is not JSON fails the parse, with the line in the error. */
const jsonLines = (text: string): Array<Record<string, unknown>> => text.split('\n').filter(line => line !== '').map(line => {
  try { return JSON.parse(line) as Record<string, unknown> } catch { throw new Error(`not a JSON line: ${line.slice(0, 200)}`) }
})

test('development defaults: when NODE_ENV is development or unset, then unset settings take the loopback host and looser limits; production and test keep the schema\'s', async (t) => {
  for (const env of [{}, { NODE_ENV: 'development' }]) {
    t.match(loadConfig(env), { NODE_ENV: 'development', HOST: '127.0.0.1', RATE_LIMIT_TOKEN_MAX: 100, RATE_LIMIT_REGISTER_MAX: 100 }, `${JSON.stringify(env)}: development values`)
  }
  t.match(loadConfig({ HOST: '0.0.0.0', RATE_LIMIT_REGISTER_MAX: '7' }), { HOST: '0.0.0.0', RATE_LIMIT_REGISTER_MAX: 7 }, 'a set variable wins over a development default')
  t.match(loadConfig({ NODE_ENV: 'test' }), { HOST: '0.0.0.0', RATE_LIMIT_TOKEN_MAX: 20, RATE_LIMIT_REGISTER_MAX: 10 }, 'test: the schema defaults')
  t.match(loadConfig({ NODE_ENV: 'production', JWT_SECRET: TEST_SECRET, DATABASE_URL: 'postgres://db/auth' }), { HOST: '0.0.0.0', RATE_LIMIT_TOKEN_MAX: 20, RATE_LIMIT_REGISTER_MAX: 10 }, 'production: the schema defaults')
  t.same(Object.keys(DEVELOPMENT_DEFAULTS).sort(), ['HOST', 'RATE_LIMIT_REGISTER_MAX', 'RATE_LIMIT_TOKEN_MAX'], 'the table the docs show')
})

test('start-up report: when the service listens, then the docs address is one to browse to and the key source is a name or a path, never a key', async (t) => {
  t.equal(docsUrl({ HOST: '127.0.0.1', PUBLIC_URL: undefined }, 3000), 'http://127.0.0.1:3000/docs')
  t.equal(docsUrl({ HOST: '0.0.0.0', PUBLIC_URL: undefined }, 3000), 'http://localhost:3000/docs', 'every interface: localhost')
  t.equal(docsUrl({ HOST: '::', PUBLIC_URL: undefined }, 3000), 'http://localhost:3000/docs')
  t.equal(docsUrl({ HOST: '::1', PUBLIC_URL: undefined }, 8080), 'http://[::1]:8080/docs', 'an IPv6 address in brackets')
  t.equal(docsUrl({ HOST: '0.0.0.0', PUBLIC_URL: 'https://auth.example.com/' }, 3000), 'https://auth.example.com/docs', 'PUBLIC_URL first')
  const keys = { JWT_PRIVATE_KEY: undefined, JWT_PRIVATE_KEY_FILE: undefined, JWT_SECRET: undefined, DATA_DIR: '/var/lib/auth' }
  t.equal(signingKeySource({ ...keys, JWT_PRIVATE_KEY_FILE: '/run/secrets/key.pem' }), 'JWT_PRIVATE_KEY_FILE /run/secrets/key.pem')
  t.equal(signingKeySource({ ...keys, JWT_PRIVATE_KEY: '-----BEGIN PRIVATE KEY-----\nsecret' }), 'JWT_PRIVATE_KEY')
  t.equal(signingKeySource({ ...keys, JWT_SECRET: TEST_SECRET }), 'JWT_SECRET')
  t.equal(signingKeySource(keys), 'generated, kept in /var/lib/auth/jwt-signing-key.pem')
})

test('.env: when the file is read, then it fills in unset variables only; when a line is not NAME=value or a quote is never closed, then the line is named and never quoted', async (t) => {
  const dir = await tempDir(t)
  const env: NodeJS.ProcessEnv = { LOG_LEVEL: 'warn' }
  t.equal(loadEnvFile(dir, env), undefined, 'no .env: nothing read, no error')
  await writeFile(join(dir, '.env'), '# a comment\n\nLOG_LEVEL=debug\nexport PORT=4000\nJWT_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----"\n')
  t.equal(loadEnvFile(dir, env), join(dir, '.env'))
  t.equal(env.LOG_LEVEL, 'warn', 'the real environment wins')
  t.equal(env.PORT, '4000', 'an unset variable is filled in (export prefix allowed)')
  t.equal(env.JWT_PRIVATE_KEY, '-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----', 'a quoted value spans lines')

  t.same(envFileProblems('A=1\nthis-is-not-a-setting hunter2\nB="open\nC=2\n'), [
    'line 2: expected NAME=value (a variable name, "=", then its value)',
    'line 3: the quoted value is never closed'
  ])
  await writeFile(join(dir, '.env'), 'PORT=4000\nJWT_SECRET hunter2-hunter2\n')
  t.throws(() => loadEnvFile(dir, {}), { name: 'ConfigError', message: `Invalid configuration:\n  ${join(dir, '.env')} line 2: expected NAME=value (a variable name, "=", then its value)` })
  t.notMatch((() => { try { loadEnvFile(dir, {}) } catch (error) { return (error as Error).message } return '' })(), /hunter2/, 'the value is not repeated')
})

test('.env: when .gitignore is read, then .env is ignored by git', async (t) => {
  const lines = (await readFile(join(REPO_ROOT, '.gitignore'), 'utf8')).split('\n').map(line => line.trim())
  t.ok(lines.includes('.env') || lines.includes('/.env'), '.env is listed in .gitignore')
})

test('.env: when the server, the migration and the user commands start beside a malformed one, then each stops with exit code 1 naming the file and line, without a stack or the value', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, '.env'), `DATA_DIR=${join(dir, 'data')}\nJWT_SECRET hunter2-hunter2-hunter2-hunter2-hunter2\n`)
  // The loader by its path: `--import tsx` would be looked up from the temporary directory.
  const tsx = ['--import', import.meta.resolve('tsx')]
  const runs = await Promise.all([
    runToExit(spawnIn(dir, process.execPath, [...tsx, SERVER], { PORT: '0', METRICS_PORT: '0' })),
    runToExit(spawnIn(dir, process.execPath, [...tsx, MIGRATE])),
    runToExit(spawnIn(dir, process.execPath, [...tsx, join(REPO_ROOT, 'src', 'users-create.ts'), '--username', 'someone', '--email', 'someone@example.com'])),
    runToExit(spawnIn(dir, process.execPath, [...tsx, join(REPO_ROOT, 'src', 'users-import.ts'), join(dir, 'users.csv')]))
  ])
  for (const [i, { code, output }] of runs.entries()) {
    const what = ['server', 'migrate', 'users-create', 'users-import'][i]
    t.equal(code, 1, `${what}: exit code 1 (${output.slice(0, 300)})`)
    t.match(output, `${join(dir, '.env')} line 2: expected NAME=value`, `${what}: the file and line`)
    t.notMatch(output, /^\s+at /m, `${what}: no stack trace`)
    t.notMatch(output, /hunter2/, `${what}: the value is not echoed`)
  }
  t.notOk(existsSync(join(dir, 'data')), 'nothing was opened')
})

test('logs: when stdout is a terminal outside production, then lines are pretty-printed; in production, or on a pipe, JSON', async (t) => {
  t.equal(prettyLogs({ NODE_ENV: 'development' }, { isTTY: true }), true)
  t.equal(prettyLogs({ NODE_ENV: 'test' }, { isTTY: true }), true)
  t.equal(prettyLogs({ NODE_ENV: 'production' }, { isTTY: true }), false, 'production: JSON even on a terminal')
  t.equal(prettyLogs({ NODE_ENV: 'development' }, { isTTY: false }), false, 'a pipe: JSON')

  // A real terminal: script(1) gives the server a pseudo-terminal. The first line comes before the database is opened.
  const script = '/usr/bin/script'
  t.ok(existsSync(script), 'script(1) from util-linux is installed')
  const dir = await tempDir(t)
  const closedPort = await freePort()
  const server = `${JSON.stringify(process.execPath)} --import tsx ${JSON.stringify(SERVER)}`
  const onTerminal = async (env: Record<string, string>): Promise<string> => {
    const child = spawnIn(REPO_ROOT, script, ['-qec', server, '/dev/null'], { DATA_DIR: join(dir, 'data'), PORT: '0', METRICS_PORT: '0', TERM: 'xterm', ...env })
    const { output } = await runToExit(child, STARTUP_MS)
    return output
  }
  // Both stop by themselves: a database that is not there, tried once.
  const database = { DATABASE_URL: `postgres://auth@127.0.0.1:${closedPort}/auth`, DATABASE_START_TIMEOUT_SECONDS: '0', JWT_SECRET: TEST_SECRET }
  const [development, production] = await Promise.all([onTerminal(database), onTerminal({ ...database, NODE_ENV: 'production' })])
  t.match(development, /\[\d\d:\d\d:\d\d\.\d{3}\] \S*INFO\S*: \S*starting: liveness answers 200/, 'development on a terminal: pino-pretty')
  t.notMatch(development, /"level":30/, 'no JSON line')
  t.match(production, /\{"level":30,[^\n]*"msg":"starting: liveness answers 200/, 'production on a terminal: JSON')
})

test('npm run dev: when started beside a .env, then it listens on 127.0.0.1 in JSON lines, says where the docs are and which key signs, redirects / to /docs, and restarts when .env changes', async (t) => {
  const dir = await tempDir(t)
  // The package as `npm run dev` sees it, with this directory's own .env beside its package.json.
  for (const entry of ['package.json', 'node_modules', 'scripts', 'src', 'migrations']) await symlink(join(REPO_ROOT, entry), join(dir, entry))
  await mkdir(join(dir, 'data'))
  const [firstPort, secondPort] = [await freePort(), await freePort()]
  const envFile = (port: number): string => `DATA_DIR=${join(dir, 'data')}\nPORT=${port}\nMETRICS_PORT=0\nLOG_LEVEL=silent\n`
  await writeFile(join(dir, '.env'), envFile(firstPort))

  // Its own process group, so that the whole of it (npm, tsx, the dev loop) is stopped as a Ctrl-C would.
  const dev = spawnIn(dir, 'npm', ['run', '--silent', 'dev'], { LOG_LEVEL: 'info' }, true)
  let stdout = ''
  let stderr = ''
  dev.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  dev.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = once(dev, 'exit')
  const servers = (): number[] => [...new Set(jsonLines(stdout).map(line => line.pid as number))]
  t.teardown(async () => {
    if (dev.exitCode === null) {
      try { process.kill(-(dev.pid as number), 'SIGTERM') } catch {}
      await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 30_000))])
    }
    for (const pid of servers()) if (alive(pid)) process.kill(pid, 'SIGKILL')
  })
  const listening = (port: number) => (line: Record<string, unknown>): boolean => line.msg === `Server listening at http://127.0.0.1:${port}`
  const seen = async (what: string, predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
    await eventually(() => {
      if (dev.exitCode !== null) throw new Error(`npm run dev exited with ${dev.exitCode}:\n${stdout}\n${stderr}`)
      return jsonLines(stdout).some(predicate)
    }, { timeoutMs: STARTUP_MS, intervalMs: 200, what: () => `${what} (output so far:\n${stdout}\n${stderr})` })
    return jsonLines(stdout).find(predicate) as Record<string, unknown>
  }

  const first = await seen('the first start listening', listening(firstPort))
  t.ok(first.pid, 'LOG_LEVEL from the real environment won over .env\'s silent: lines are written')
  const report = await seen('the start-up report', line => line.docs !== undefined)
  t.equal(report.docs, `http://127.0.0.1:${firstPort}/docs`, 'where the docs are')
  t.match(report.signing_key, { alg: 'EdDSA', kid: /^[A-Za-z0-9_-]{43}$/, source: `generated, kept in ${join(dir, 'data', 'jwt-signing-key.pem')}` }, 'which key signs, and where it came from')
  t.equal(report.node_env, 'development')
  t.notMatch(stdout + stderr, /PRIVATE KEY/, 'the key itself is never written')

  const base = `http://127.0.0.1:${firstPort}`
  const root = await fetch(`${base}/`, { redirect: 'manual' })
  t.equal(root.status, 302, 'GET /: a redirect')
  t.equal(root.headers.get('location'), '/docs', 'to the API documentation')
  const docs = await fetch(`${base}/`)
  t.equal(docs.status, 200, 'followed, it lands on the docs')
  t.match(await docs.text(), /swagger/i)
  const registration = await fetch(`${base}/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(registration.headers.get('x-ratelimit-limit'), '100', 'registration: the development limit')

  await writeFile(join(dir, '.env'), envFile(secondPort))
  const second = await seen('a restart listening on the port .env now names', listening(secondPort))
  t.not(second.pid, first.pid, 'a new process')
  t.match(stderr, /\[dev\] \.env changed: restarting/)
  t.notOk(alive(first.pid as number), 'the first process has exited')
  t.equal((await fetch(`http://127.0.0.1:${secondPort}/health/live`)).status, 200, 'the new process answers')
  t.ok(jsonLines(stdout).some(line => line.pid === first.pid && line.msg === 'closed'), 'the first one closed gracefully')

  process.kill(-(dev.pid as number), 'SIGTERM')
  await exited
  await eventually(() => servers().every(pid => !alive(pid)), { timeoutMs: 30_000, what: 'every server process gone once npm run dev is stopped' })
  t.ok(jsonLines(stdout).some(line => line.pid === second.pid && line.msg === 'closed'), 'the last one closed gracefully')
  t.ok(jsonLines(stdout).length > 5, 'stdout held JSON lines only (every line parsed)')
})
