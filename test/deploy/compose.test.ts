import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { test } from 'tap'
import { parse } from 'yaml'
import { loadConfig, loadMigrationConfig } from '../../src/config.js'
import { REPO_ROOT, SETTINGS, settingDefault } from '../helper.js'

// A value that passes the JWT_SECRET checks, standing in for `${JWT_SECRET:?...}`.
const STRONG_SECRET = 'Zq3v8K1pX0r7Lm2Nw9Yt4Hb6Jc5Fd1Se-deploy-test'

type Json = Record<string, unknown>

interface ComposeService {
  name: string
  /** Runs the image built from our Dockerfile (build:), as opposed to a third-party image. */
  ours: boolean
  image: string | undefined
  /** Every variable the service gets: its env files' keys in order, then environment:, later ones winning. */
  env: Map<string, string | undefined>
  /** Variable name -> where it was set, for messages. */
  origin: Map<string, string>
  raw: Json
}

/** Keys and values of a docker-compose env file: KEY=VALUE lines, # comments, a bare KEY passes the shell's value. */
function parseEnvFile (text: string): Array<[string, string | undefined]> {
  const entries: Array<[string, string | undefined]> = []
  for (const line of text.split('\n')) {
    const trimmed = line.trim()
    if (trimmed === '' || trimmed.startsWith('#')) continue
    const eq = trimmed.indexOf('=')
    entries.push(eq === -1 ? [trimmed, undefined] : [trimmed.slice(0, eq).trim(), trimmed.slice(eq + 1)])
  }
  return entries
}

function environmentEntries (environment: unknown): Array<[string, string | undefined]> {
  if (environment === undefined || environment === null) return []
  if (Array.isArray(environment)) {
    return environment.map(item => {
      const text = String(item)
      const eq = text.indexOf('=')
      return eq === -1 ? [text, undefined] : [text.slice(0, eq), text.slice(eq + 1)]
    })
  }
  return Object.entries(environment as Json).map(([key, value]) => [key, value === null ? undefined : String(value)])
}

async function loadCompose (text: string, baseDir: string): Promise<ComposeService[]> {
  // merge: YAML merge keys (<<: *anchor), which docker-compose honours.
  const document = parse(text, { merge: true }) as { services?: Record<string, Json> }
  const services: ComposeService[] = []
  for (const [name, raw] of Object.entries(document.services ?? {})) {
    const env = new Map<string, string | undefined>()
    const origin = new Map<string, string>()
    const envFiles = raw.env_file === undefined ? [] : Array.isArray(raw.env_file) ? raw.env_file.map(String) : [String(raw.env_file)]
    for (const file of envFiles) {
      for (const [key, value] of parseEnvFile(await readFile(resolve(baseDir, file), 'utf8'))) {
        env.set(key, value)
        origin.set(key, file)
      }
    }
    for (const [key, value] of environmentEntries(raw.environment)) {
      env.set(key, value)
      origin.set(key, 'environment:')
    }
    const image = typeof raw.image === 'string' ? raw.image : undefined
    // Ours: built from the root Dockerfile (the example downstream service has a Dockerfile of its own).
    const ours = raw.build !== undefined && (typeof raw.build === 'string' || (raw.build as Json).dockerfile === undefined)
    services.push({ name, ours, image, env, origin, raw })
  }
  return services
}

/** Third-party images and the variables of their own they may be given. */
const THIRD_PARTY: Array<{ image: RegExp, own: RegExp | undefined }> = [
  { image: /^postgres:/, own: /^POSTGRES_/ },
  { image: /^redis:/, own: undefined },
  { image: /^axllent\/mailpit(:|$)/, own: /^MP_/ },
  // examples/downstream (its own Dockerfile): configured by its own variables, PORT and HOST included.
  { image: /^auth-service-downstream:/, own: /^(AUTH_URL|AUDIENCE|CLIENT_ID|CLIENT_SECRET|FAIL_OPEN|HOST|LOG_LEVEL|PORT)$/ }
]

/** Every variable a service sets that is not a setting of ConfigSchema (nor, for postgres, one of its own). */
function unknownVariables (services: ComposeService[]): string[] {
  const problems: string[] = []
  for (const service of services) {
    const thirdParty = service.ours ? undefined : THIRD_PARTY.find(entry => entry.image.test(service.image ?? ''))
    if (!service.ours && thirdParty === undefined) {
      problems.push(`${service.name}: neither built from our Dockerfile nor a known image (${service.image ?? 'no image'})`)
      continue
    }
    for (const key of service.env.keys()) {
      if (thirdParty?.own?.test(key) === true) continue
      if (SETTINGS.includes(key)) {
        if (thirdParty !== undefined) problems.push(`${service.name}: ${key} is our setting, given to ${service.image ?? ''}`)
        continue
      }
      if (thirdParty?.own?.test(key) === true) continue
      problems.push(`${service.name}: ${key} (${service.origin.get(key) ?? '?'}) is not a setting of src/config.ts`)
    }
  }
  return problems
}

/** docker-compose durations: 12s, 1m30s, 500ms. */
function durationMs (value: unknown): number {
  const text = String(value)
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 }
  let total = 0
  let rest = text
  for (let i = 0; i < 10 && rest !== ''; i++) {
    const match = /^(\d+(?:\.\d+)?)(ms|us|h|m|s)/.exec(rest)
    if (match === null) throw new Error(`not a duration: ${text}`)
    total += Number(match[1]) * units[match[2]]
    rest = rest.slice(match[0].length)
  }
  if (rest !== '') throw new Error(`not a duration: ${text}`)
  return total
}

const COMPOSE_FILE = join(REPO_ROOT, 'docker-compose.yml')

test('docker-compose.yml: when any service of our image is given a variable, then it is a ConfigSchema setting (postgres keeps its POSTGRES_*)', async (t) => {
  const text = await readFile(COMPOSE_FILE, 'utf8')
  const services = await loadCompose(text, REPO_ROOT)
  const ours = services.filter(s => s.ours)
  t.ok(ours.length >= 3, `migrate, auth and auth-replica run our image (found ${ours.map(s => s.name).join(', ')})`)
  t.ok(ours.some(s => (s.raw.env_file ?? undefined) !== undefined), 'settings come from an env file')
  t.same(unknownVariables(services), [], 'every variable is a setting')

  // The check itself can fail: a misspelt setting in the env file, and ours given to postgres, are both caught.
  const broken = await loadCompose(text, REPO_ROOT)
  broken.find(s => s.name === 'auth')?.env.set('JWT_SECRETS', 'x')
  broken.find(s => s.name === 'db')?.env.set('DATABASE_URL', 'postgres://x')
  t.same(unknownVariables(broken).map(p => p.split(' ')[1]), ['DATABASE_URL', 'JWT_SECRETS'], 'a stray variable is reported')

  for (const service of ours) {
    const env: Record<string, string | undefined> = {}
    for (const [key, value] of service.env) env[key] = value?.startsWith('${') === true ? STRONG_SECRET : value
    // The migrate job reads only what migrating needs (no signing key); the servers read everything.
    if (service.name === 'migrate') t.doesNotThrow(() => loadMigrationConfig(env), 'migrate: its settings pass loadMigrationConfig')
    else t.doesNotThrow(() => loadConfig(env), `${service.name}: the settings it gets pass loadConfig`)
  }
})

test('docker-compose.yml: when the app starts, then a one-shot migrate service has completed first and the app does not migrate itself', async (t) => {
  const services = await loadCompose(await readFile(COMPOSE_FILE, 'utf8'), REPO_ROOT)
  const migrate = services.find(s => s.name === 'migrate')
  t.ok(migrate?.ours, 'migrate is built from our Dockerfile')
  t.same(migrate?.raw.command, ['node', 'dist/migrate.js'], 'migrate runs the compiled migrator')
  const apps = services.filter(s => s.ours && s.name !== 'migrate')
  t.same(apps.map(s => s.name).sort(), ['auth', 'auth-replica'], 'the app services')
  for (const app of apps) {
    t.equal(app.env.get('MIGRATE_ON_START'), 'false', `${app.name}: MIGRATE_ON_START=false`)
    t.match(app.raw.depends_on, { migrate: { condition: 'service_completed_successfully' }, db: { condition: 'service_healthy' } }, `${app.name} waits for migrate and db`)
  }
  const db = services.find(s => s.name === 'db')
  t.equal(db?.image, 'postgres:16-alpine', 'db image')
  t.ok((db?.raw.healthcheck as Json | undefined)?.test, 'db has a healthcheck')
  t.match(db?.raw.volumes, [/^pgdata:/], 'db keeps its files in a named volume')
})

test('docker-compose.yml: when JWT_SECRET is needed, then it comes only from the shell or .env, with no default and never from a committed env file', async (t) => {
  const services = await loadCompose(await readFile(COMPOSE_FILE, 'utf8'), REPO_ROOT)
  const migrate = services.find(s => s.name === 'migrate')
  t.notOk(migrate?.env.has('JWT_SECRET'), 'migrate: no signing key, it only migrates')
  for (const service of services.filter(s => s.ours && s.name !== 'migrate')) {
    t.match(service.env.get('JWT_SECRET'), /^\$\{JWT_SECRET:\?[^}]+\}$/, `${service.name}: \${JWT_SECRET:?message}`)
    t.equal(service.origin.get('JWT_SECRET'), 'environment:', `${service.name}: not from an env file`)
    for (const secret of ['JWT_PRIVATE_KEY', 'JWT_VERIFY_KEYS']) t.notOk(service.env.has(secret), `${service.name}: no ${secret} committed`)
  }
})

test('docker-compose.yml: when the scale profile runs, then Redis has a healthcheck and two replicas share it through REDIS_URL', async (t) => {
  const services = await loadCompose(await readFile(COMPOSE_FILE, 'utf8'), REPO_ROOT)
  const redis = services.find(s => s.name === 'redis')
  t.equal(redis?.image, 'redis:7-alpine', 'redis image')
  t.same(redis?.raw.profiles, ['scale'], 'redis only in the scale profile')
  t.ok((redis?.raw.healthcheck as Json | undefined)?.test, 'redis has a healthcheck')
  const replica = services.find(s => s.name === 'auth-replica')
  t.same(replica?.raw.profiles, ['scale'], 'replicas only in the scale profile')
  t.match(replica?.raw.deploy, { replicas: 2 }, 'two replicas')
  t.match(replica?.env.get('REDIS_URL'), /^redis:\/\/redis:6379/, 'REDIS_URL points at the profile\'s Redis')
  t.match(replica?.raw.depends_on, { redis: { condition: 'service_healthy' } }, 'replicas wait for a healthy Redis')
  for (const service of services.filter(s => !s.ours || s.name === 'auth' || s.name === 'migrate')) {
    t.notOk(service.env.has('REDIS_URL') && service.raw.profiles === undefined, `${service.name}: no REDIS_URL outside the profile`)
  }
})

test('docker-compose.yml: when Docker stops an app container, then stop_grace_period leaves SHUTDOWN_GRACE_MS room', async (t) => {
  const services = await loadCompose(await readFile(COMPOSE_FILE, 'utf8'), REPO_ROOT)
  for (const service of services.filter(s => s.ours)) {
    const grace = Number(service.env.get('SHUTDOWN_GRACE_MS') ?? settingDefault('SHUTDOWN_GRACE_MS'))
    const stop = durationMs(service.raw.stop_grace_period ?? '10s')
    t.ok(stop > grace, `${service.name}: stop_grace_period ${stop} ms > SHUTDOWN_GRACE_MS ${grace} ms`)
    t.ok(stop <= grace + 10_000, `${service.name}: and only a bit above`)
  }
  t.equal(durationMs('1m30s'), 90_000, 'durations parse as docker-compose reads them')
})
