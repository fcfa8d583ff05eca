// The verifier plugin's per-request cost: a downstream process (bench/verifier-server.mjs) serving the same route
// bare and behind the plugin's authenticate, measured as two scenarios of the same run, alternating with the others.
import { startServer, stopServer, type Server } from './children.js'
import { cannon } from './load.js'
import type { Row } from './report.js'
import { CONNECTIONS, PASSWORD, type Scenario } from './scenarios.js'

// benchScenarios registers this user and makes it an administrator (its tokens carry clients:write).
const BENCH_USER = 'bench_user'

const PREWARM_SECONDS = 2

export const VERIFIER_BARE = 'v1 downstream GET /bare (no plugin)'
export const VERIFIER_VERIFIED = 'v2 downstream GET /verified (verifier plugin)'

async function adminToken (service: Server): Promise<string> {
  const res = await fetch(`${service.url}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', username: BENCH_USER, password: PASSWORD }).toString(),
    signal: AbortSignal.timeout(10_000)
  })
  if (res.status !== 200) throw new Error(`login failed: ${res.status}`)
  return ((await res.json()) as { access_token: string }).access_token
}

/** A service client for the plugin's feed, the downstream server, and its two scenarios (after benchScenarios). */
export async function verifierScenarios (service: Server): Promise<{ server: Server, scenarios: Scenario[], stop: () => Promise<void> }> {
  const created = await fetch(`${service.url}/admin/clients`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await adminToken(service)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench-downstream', scopes: ['sessions:ended'] }),
    signal: AbortSignal.timeout(10_000)
  })
  if (created.status !== 201) throw new Error(`could not register the bench client: ${created.status}`)
  const client = await created.json() as { client_id: string, client_secret: string }
  const server = await startServer('downstream', './verifier-server.mjs', {
    ...process.env, NODE_ENV: 'production', AUTH_URL: service.url, CLIENT_ID: client.client_id, CLIENT_SECRET: client.client_secret
  })
  // A fresh user token for each run: runs may outlast ACCESS_TOKEN_TTL.
  const load = (path: string, withToken: boolean) => async (duration: number) => ({
    url: `${server.url}${path}`,
    connections: CONNECTIONS,
    duration,
    ...(withToken ? { headers: { authorization: `Bearer ${await adminToken(service)}` } } : {})
  })
  // Both routes warmed before any round: the pair's first scenario otherwise meets a process still compiling (its
  // first-round figure was 40% below the later rounds), whichever route that is.
  for (const path of ['/bare', '/verified']) await cannon(await load(path, path === '/verified')(PREWARM_SECONDS))
  return {
    server,
    scenarios: [
      { id: 'v1', server, loads: [{ label: VERIFIER_BARE, options: load('/bare', false) }] },
      { id: 'v2', server, loads: [{ label: VERIFIER_VERIFIED, options: load('/verified', true) }] }
    ],
    stop: async () => { await stopServer(server) }
  }
}

export interface VerifierCost {
  bareRps: number
  verifiedRps: number
  /** verified req/s over bare req/s. */
  ratio: number
  bareP50Ms: number
  verifiedP50Ms: number
  /** 1/verified - 1/bare req/s: the server time the plugin adds to a request, the server being saturated. */
  perRequestUs: number
}

export function verifierCost (rows: Row[]): VerifierCost | undefined {
  const bare = rows.find(r => r.scenario === VERIFIER_BARE)
  const verified = rows.find(r => r.scenario === VERIFIER_VERIFIED)
  if (bare === undefined || verified === undefined || bare.rps <= 0 || verified.rps <= 0) return undefined
  return {
    bareRps: bare.rps,
    verifiedRps: verified.rps,
    ratio: verified.rps / bare.rps,
    bareP50Ms: bare.p50Ms,
    verifiedP50Ms: verified.p50Ms,
    perRequestUs: (1 / verified.rps - 1 / bare.rps) * 1e6
  }
}

export function verifierLine (rows: Row[]): string {
  const cost = verifierCost(rows)
  if (cost === undefined) return 'verifier plugin: not measured'
  return `verifier plugin: GET /verified (one token repeated, so its verified-token cache answers; then the ended-session set) at ${cost.ratio.toFixed(3)} of the same route bare in ` +
    `the same process (${cost.verifiedRps.toFixed(0)} vs ${cost.bareRps.toFixed(0)} req/s, p50 ${cost.verifiedP50Ms} vs ${cost.bareP50Ms} ms): ` +
    (cost.perRequestUs > 0 ? `about ${cost.perRequestUs.toFixed(1)} µs of server time per request` : 'no cost above this run\'s noise')
}
