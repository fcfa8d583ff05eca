import { once } from 'node:events'
import { test } from 'tap'
import { eventually, startServer, tempDir, testDatabaseUrl, TIMING_MARGIN_MS, type Running } from './helper.js'

// Deliberately slow argon2id, so that a login is still hashing when the signal arrives.
const SLOW_HASH = { ARGON2_MEMORY_KIB: '65536', ARGON2_TIME_COST: '6' }
const PASSWORD = 'Otter-Compass-3390-Juniper'

async function environment (t: Parameters<typeof tempDir>[0], extra: Record<string, string>): Promise<Record<string, string>> {
  const url = await testDatabaseUrl(t)
  return { DATA_DIR: await tempDir(t), LOG_LEVEL: 'info', RATE_LIMIT_ENABLED: 'false', ...SLOW_HASH, ...(url !== undefined ? { DATABASE_URL: url } : {}), ...extra }
}

async function registerOver (url: string, username: string): Promise<void> {
  const res = await fetch(`${url}/auth/register`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, email: `${username}@example.com`, password: PASSWORD })
  })
  if (res.status !== 201) throw new Error(`register: ${res.status}`)
}

interface LogLine { msg?: string, request_id?: string, req?: { url?: string } }

/** The server's JSON log lines so far, in order. */
function logLines (server: Running): LogLine[] {
  return server.output().split('\n').flatMap(line => {
    try { return [JSON.parse(line) as LogLine] } catch { return [] }
  })
}

/** The request ids of the logins the server has received so far. */
const loginsReceived = (server: Running): string[] =>
  logLines(server).filter(l => l.msg === 'incoming request' && l.req?.url === '/auth/token').map(l => l.request_id ?? '')

test('SIGTERM: when a login is in flight, then it completes with 200, new connections are refused, the database closes and the process exits 0', async (t) => {
  const server = await startServer(await environment(t, { SHUTDOWN_GRACE_MS: '20000' }))
  t.teardown(() => { server.child.kill('SIGKILL') })
  await registerOver(server.url, 'shutdown_user')

  const exited = once(server.child, 'exit')
  const inFlight = fetch(`${server.url}/auth/token`, { method: 'POST', body: new URLSearchParams({ username: 'shutdown_user', password: PASSWORD }) })
  await eventually(() => loginsReceived(server).length === 1, { timeoutMs: 30_000, what: 'the server receiving the login' })
  server.child.kill('SIGTERM')
  await eventually(() => server.output().includes('"msg":"shutting down"'), { timeoutMs: 30_000, what: 'the server handling SIGTERM' })
  const refused = await fetch(`${server.url}/health/live`).then(r => `answered ${r.status}`, (error: Error & { cause?: { code?: string } }) => error.cause?.code ?? error.message)
  t.not(refused, 'answered 200', `a new request after SIGTERM is not served (${refused})`)

  const login = await inFlight
  t.equal(login.status, 200, 'the login in progress completed')
  t.ok(((await login.json()) as { access_token?: string }).access_token, 'with its tokens')
  const [code] = await exited
  t.equal(code, 0, 'clean exit')
  const lines = logLines(server)
  const [loginId] = loginsReceived(server)
  const completed = lines.findIndex(l => l.msg === 'request completed' && l.request_id === loginId)
  t.ok(completed !== -1 && completed < lines.findIndex(l => l.msg === 'closed'), 'the process waited for the login: it completed before the service closed')
  t.match(server.output(), /"msg":"shutting down"/)
  t.match(server.output(), /"msg":"closed"/, 'plugins (the database among them) closed before exit')
})

test('SIGTERM: when in-flight work outlasts SHUTDOWN_GRACE_MS, then the process exits anyway: after the grace period and the hash already running', async (t) => {
  const graceMs = 200
  // An unknown user costs one full verify against the dummy hash, at parameters that take longer than the grace period.
  const server = await startServer(await environment(t, { SHUTDOWN_GRACE_MS: String(graceMs), ARGON2_MEMORY_KIB: '131072', ARGON2_TIME_COST: '10' }))
  t.teardown(() => { server.child.kill('SIGKILL') })
  const login = async (): Promise<number | string> => await fetch(`${server.url}/auth/token`, { method: 'POST', body: new URLSearchParams({ username: 'nobody_at_all', password: PASSWORD }) }).then(r => r.status, () => 'connection closed')
  const hashStarted = performance.now()
  t.equal(await login(), 401)
  const oneHash = performance.now() - hashStarted
  t.ok(oneHash > graceMs, `one verify takes ${Math.round(oneHash)} ms, longer than the grace period`)

  const exited = once(server.child, 'exit')
  const inFlight = login()
  await eventually(() => loginsReceived(server).length === 2, { timeoutMs: 30_000, what: 'the server receiving the second login' })
  const signalled = performance.now()
  server.child.kill('SIGTERM')
  const [code] = await exited
  const took = performance.now() - signalled
  t.equal(code, 1, 'a forced exit says so')
  // The bound is the behaviour: process.exit waits only for the hash already running on a worker thread (a native call
  // cannot be interrupted), and nothing new starts.
  t.ok(took < graceMs + oneHash + TIMING_MARGIN_MS, `exited ${Math.round(took)} ms after the signal (grace ${graceMs} ms, one hash ${Math.round(oneHash)} ms)`)
  t.equal(await inFlight, 'connection closed', 'the unfinished login got no answer')
  t.match(server.output(), /killed by timeout \(200ms\)/)
})
