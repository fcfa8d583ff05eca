import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'tap'
import { REPO_ROOT, freePort, startServer, stopServer, tempDir, testDatabaseUrl } from '../helper.js'

export const WALKTHROUGH_MARKER = '# API at a glance: test/deploy/readme-walkthrough.test.ts runs this block exactly as written'

/** The one ```sh block of the README that starts with the marker, as written. */
export function walkthroughOf (readme: string): string {
  const blocks = [...readme.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map(m => m[1]).filter(b => b.startsWith(`${WALKTHROUGH_MARKER}\n`))
  if (blocks.length !== 1) throw new Error(`README.md: expected one \`\`\`sh block starting with "${WALKTHROUGH_MARKER}", found ${blocks.length}`)
  return blocks[0]
}

// Each curl call also reports its method, URL and status on stderr, so that the block's own text stays what a
// reader pastes. set -euo pipefail makes a failed capture (no match, an unset variable) stop the run.
const PRELUDE = `set -euo pipefail
curl () { command curl -w '%{stderr}@@ %{method} %{url_effective} %{http_code}\\n' "$@"; }
`

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'

// What the README says each step answers, in order.
const EXPECTED: Array<[string, RegExp, number, string]> = [
  ['POST', /^\/auth\/register$/, 201, 'register'],
  ['POST', /^\/auth\/token$/, 200, 'log in (form)'],
  ['GET', /^\/users\/me$/, 200, 'the current user'],
  ['POST', /^\/auth\/token$/, 200, 'refresh'],
  ['POST', /^\/auth\/token$/, 200, 'log in again (JSON, email)'],
  ['GET', /^\/users\/me\/sessions$/, 200, 'list sessions'],
  ['GET', /^\/users\/me\/sessions$/, 200, 'list sessions to capture the other one'],
  ['DELETE', new RegExp(`^/users/me/sessions/${UUID}$`), 204, 'end the other session'],
  ['POST', /^\/auth\/logout$/, 204, 'log out'],
  ['GET', /^\/users\/me$/, 401, 'the logged-out access token is refused'],
  ['POST', /^\/auth\/token$/, 200, 'log in for a refresh token to revoke'],
  ['POST', /^\/auth\/revoke$/, 200, 'revoke'],
  ['POST', /^\/auth\/token$/, 400, 'the revoked refresh token is refused'],
  ['POST', /^\/auth\/token$/, 200, 'log in for a live access token'],
  ['DELETE', /^\/users\/me\/sessions$/, 204, 'end every session'],
  ['GET', /^\/\.well-known\/jwks\.json$/, 200, 'JWKS'],
  ['GET', /^\/health\/live$/, 200, 'liveness'],
  ['GET', /^\/health\/ready$/, 200, 'readiness']
]

test('README walkthrough: when the "API at a glance" block is run as written against a started service, then every step answers as the README says', async (t) => {
  const block = walkthroughOf(await readFile(join(REPO_ROOT, 'README.md'), 'utf8'))
  t.match(block, /^AUTH=\$\{AUTH:-http:\/\/localhost:3000\}$/m, 'the base URL is a variable with the default port')

  const databaseUrl = await testDatabaseUrl(t)
  const server = await startServer({
    DATA_DIR: await tempDir(t),
    PORT: String(await freePort()),
    LOG_LEVEL: 'info',
    ...(databaseUrl !== undefined ? { DATABASE_URL: databaseUrl } : {})
  })
  t.teardown(async () => { await stopServer(server) })

  const shell = spawn('bash', ['-c', PRELUDE + block], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', AUTH: server.url },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  shell.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  shell.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const timer = setTimeout(() => { shell.kill('SIGKILL') }, 120_000)
  const [code] = await once(shell, 'exit') as [number | null]
  clearTimeout(timer)
  const output = `${stdout}\n${stderr}`
  const calls = [...stderr.matchAll(/^@@ (\S+) (\S+) (\d{3})$/gm)].map(([, method, url, status]) => ({ method, path: new URL(url).pathname, status: Number(status) }))

  if (code !== 0) t.comment(output)
  t.equal(code, 0, 'the block exits 0 under set -euo pipefail')
  t.equal(calls.length, EXPECTED.length, 'every curl of the block ran, and no other')
  EXPECTED.forEach(([method, path, status, what], i) => {
    t.same({ method: calls[i]?.method, status: calls[i]?.status }, { method, status }, `step ${i + 1}, ${what}: ${method} answered ${status}`)
    t.match(calls[i]?.path ?? '', path, `step ${i + 1}, ${what}: the path`)
  })
  t.match(stdout, /"keys":\[\{"kty":"OKP"/, 'the JWKS publishes the generated Ed25519 key')
  t.match(stdout, /"username":"alice"/, 'the current user is shown')

  const log = server.output()
  t.notMatch(log, 'correct horse battery', 'the password never reached the log')
  t.notMatch(log, /eyJ[\w-]+\.eyJ/, 'no access token reached the log')
})
