import { execFile, spawn } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { test } from 'tap'
import { parse } from 'yaml'
import { loadConfig, loadMigrationConfig } from '../../src/config.js'
import { loadKeyRing } from '../../src/services/keys.js'
import { REPO_ROOT, SETTINGS, settingDefault, tempDir } from '../helper.js'

// A value that passes the JWT_SECRET checks, standing in for a `${VARIABLE:?...}` a compose file may hold.
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

test('docker-compose.yml: when nothing is set, then the servers run in development mode with an Ed25519 key generated into a named volume at DATA_DIR', async (t) => {
  const text = await readFile(COMPOSE_FILE, 'utf8')
  t.notMatch(text.split('\n').filter(line => !line.trimStart().startsWith('#')).join('\n'), /\$\{[A-Z_]+:\?/, 'no variable is required (no $' + '{VAR:?message})')
  const document = parse(text, { merge: true }) as { volumes?: Json }
  const services = await loadCompose(text, REPO_ROOT)
  const dockerfile = await readFile(join(REPO_ROOT, 'Dockerfile'), 'utf8')
  const imageDataDir = /^ENV .*\bDATA_DIR=(\S+)/m.exec(dockerfile)?.[1]
  t.ok(imageDataDir?.startsWith('/'), `the image sets an absolute DATA_DIR (${imageDataDir ?? 'none'})`)
  t.match(dockerfile, new RegExp(`^RUN mkdir ${imageDataDir ?? '-'} && chown node:node ${imageDataDir ?? '-'}$`, 'm'), 'the image creates DATA_DIR owned by node, so a named volume mounted there starts writable')
  t.ok(/^USER node$/m.test(dockerfile), 'and runs as node')
  for (const service of services.filter(s => s.ours && s.name !== 'migrate')) {
    t.equal(service.env.get('NODE_ENV'), 'development', `${service.name}: NODE_ENV=development`)
    for (const setting of ['JWT_SECRET', 'JWT_PRIVATE_KEY', 'JWT_PRIVATE_KEY_FILE', 'JWT_VERIFY_KEYS', 'JWT_VERIFY_KEYS_FILE']) {
      t.notOk(service.env.has(setting), `${service.name}: no ${setting}, so the key is generated`)
    }
    t.ok(service.env.has('DATABASE_URL'), `${service.name}: DATABASE_URL, so DATA_DIR never holds an embedded database`)
    const dataDir = service.env.get('DATA_DIR') ?? imageDataDir
    t.equal(dataDir, imageDataDir, `${service.name}: DATA_DIR is the image's directory`)
    const mounts = (service.raw.volumes as string[] | undefined ?? []).map(v => v.split(':'))
    const mount = mounts.find(([, target]) => target === dataDir)
    t.ok(mount !== undefined && !mount[0].startsWith('.') && !mount[0].startsWith('/'), `${service.name}: a named volume at ${dataDir ?? '?'}`)
    t.ok(mount !== undefined && document.volumes !== undefined && mount[0] in document.volumes, `${service.name}: the volume is declared`)
  }
  const migrate = services.find(s => s.name === 'migrate')
  t.notOk([...(migrate?.env.keys() ?? [])].some(k => k.startsWith('JWT_')), 'migrate: no signing key, it only migrates')
})

test('docker-compose.yml: when a container of our image (or the example downstream) listens, then HOST=0.0.0.0, as the development default of 127.0.0.1 would shut out the published port', async (t) => {
  const services = await loadCompose(await readFile(COMPOSE_FILE, 'utf8'), REPO_ROOT)
  const built = services.filter(s => s.raw.build !== undefined)
  t.same(built.map(s => s.name).sort(), ['auth', 'auth-replica', 'downstream', 'migrate'], 'every service built from this repository')
  for (const service of built) t.equal(service.env.get('HOST'), '0.0.0.0', `${service.name}: HOST=0.0.0.0 (${service.origin.get('HOST') ?? 'unset'})`)
  for (const file of ['Dockerfile', 'examples/downstream/Dockerfile']) {
    const runtime = (await readFile(join(REPO_ROOT, file), 'utf8')).split(/^(?=FROM )/m).at(-1) ?? ''
    t.match(runtime, /^ENV .*\bHOST=0\.0\.0\.0\b/m, `${file}: the image itself sets HOST=0.0.0.0`)
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

/** The compose files alone in a fresh directory, as a clone has them: no .env beside them. */
async function composeCopy (t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = await tempDir(t)
  for (const path of ['docker-compose.yml', 'docker-compose.prod.yml', 'deploy']) await cp(join(REPO_ROOT, path), join(dir, path), { recursive: true })
  return dir
}

/** `docker-compose ...args` in `dir` with PATH and `env` only (none of this process's variables): its exit code and output. */
async function compose (dir: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile('docker-compose', args, { cwd: dir, env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1
      resolve({ code, stdout, stderr: error !== null && code === -1 ? `${stderr}${error.message}` : stderr })
    })
  })
}

const PROD = ['-f', 'docker-compose.yml', '-f', 'docker-compose.prod.yml']

test('docker-compose config: when the environment is empty and there is no .env, then the default services and every profile are valid', async (t) => {
  const dir = await composeCopy(t)
  const profiles = [[], ['--profile', 'scale'], ['--profile', 'downstream']]
  const results = await Promise.all(profiles.map(async profile => await compose(dir, [...profile, 'config', '-q'])))
  profiles.forEach((profile, i) => {
    t.equal(results[i].code, 0, `docker-compose ${profile.join(' ')} config -q passes${results[i].stderr === '' ? '' : `: ${results[i].stderr}`}`)
  })
  const resolved = parse((await compose(dir, ['config'])).stdout) as { services: Record<string, { environment: Json }> }
  t.equal(resolved.services.auth.environment.NODE_ENV, 'development', 'auth runs in development mode')
  // The check can fail: a required variable with no value stops `config`.
  await writeFile(join(dir, 'docker-compose.yml'), (await readFile(join(dir, 'docker-compose.yml'), 'utf8')).replace('SMTP_URL: smtp://mailpit:1025', 'SMTP_URL: $' + '{UNSET_IN_TEST:?unset}'))
  t.not((await compose(dir, ['config', '-q'])).code, 0, 'a required variable left unset fails')
})

test('docker-compose.prod.yml: when a secret is missing, then config fails naming it; when all are given, every server runs in production with the key as a compose secret', async (t) => {
  const dir = await composeCopy(t)
  const prodText = await readFile(join(dir, 'docker-compose.prod.yml'), 'utf8')
  const keyFile = join(dir, 'signing-key.pem')
  const { privateKey } = generateKeyPairSync('ed25519')
  await writeFile(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), { mode: 0o600 })
  const password = randomBytes(24).toString('hex')
  const given: Record<string, string> = { POSTGRES_PASSWORD: password, JWT_PRIVATE_KEY_FILE: keyFile, PUBLIC_URL: 'https://auth.example.com', SMTP_URL: 'smtp://relay.example.com:587' }

  const interpolated = [...prodText.split('\n').filter(l => !l.trimStart().startsWith('#')).join('\n').matchAll(/\$\{([A-Z_]+)([^}]*)\}/g)]
  t.same([...new Set(interpolated.map(m => m[1]))].sort(), Object.keys(given).sort(), 'the variables the override reads')
  t.ok(interpolated.every(m => m[2].startsWith(':?') && m[2].length > 2), 'each one required with a message, none with a default')

  const names = Object.keys(given)
  const profiles = [[], ['--profile', 'downstream']]
  const [none, result, ...rest] = await Promise.all([
    compose(dir, [...PROD, 'config', '-q']),
    compose(dir, [...PROD, '--profile', 'scale', 'config'], given),
    ...names.map(async name => await compose(dir, [...PROD, 'config', '-q'], Object.fromEntries(Object.entries(given).filter(([key]) => key !== name)))),
    ...profiles.map(async profile => await compose(dir, [...PROD, ...profile, 'config', '-q'], given))
  ])
  t.not(none.code, 0, 'with none of them, config fails')
  names.forEach((name, i) => {
    t.not(rest[i].code, 0, `without ${name}, config fails`)
    t.match(rest[i].stderr, name, `and says ${name}`)
  })
  profiles.forEach((profile, i) => {
    const passed = rest[names.length + i]
    t.equal(passed.code, 0, `with them, ${profile.join(' ') || 'the default services'}: config passes${passed.stderr === '' ? '' : `: ${passed.stderr}`}`)
  })
  t.equal(result.code, 0, `with them, --profile scale: config passes${result.stderr === '' ? '' : `: ${result.stderr}`}`)
  const resolved = parse(result.stdout) as { services: Record<string, { environment?: Json, secrets?: Array<string | { source: string }> }>, secrets?: Record<string, { file?: string }> }
  t.equal(resolved.services.db.environment?.POSTGRES_PASSWORD, password, 'db: POSTGRES_PASSWORD from the environment')
  t.equal(resolved.secrets?.jwt_signing_key?.file, keyFile, 'the key file is the compose secret')
  for (const name of ['migrate', 'auth', 'auth-replica']) {
    const env = resolved.services[name].environment ?? {}
    t.equal(env.NODE_ENV, 'production', `${name}: NODE_ENV=production`)
    t.equal(env.DATABASE_URL, `postgres://auth:${password}@db:5432/auth`, `${name}: DATABASE_URL carries the given password`)
    if (name === 'migrate') {
      t.doesNotThrow(() => loadMigrationConfig(env), 'migrate: its settings pass loadMigrationConfig in production')
      t.notOk(Object.keys(env).some(key => key.startsWith('JWT_')), 'migrate: no signing key')
      continue
    }
    t.equal(env.JWT_PRIVATE_KEY_FILE, '/run/secrets/jwt_signing_key', `${name}: JWT_PRIVATE_KEY_FILE is the mounted secret`)
    t.same((resolved.services[name].secrets ?? []).map(s => typeof s === 'string' ? s : s.source), ['jwt_signing_key'], `${name}: gets the secret`)
    t.notOk('JWT_SECRET' in env, `${name}: no JWT_SECRET`)
    t.equal(env.PUBLIC_URL, given.PUBLIC_URL, `${name}: PUBLIC_URL given`)
    t.equal(env.SMTP_URL, given.SMTP_URL, `${name}: SMTP_URL given, not Mailpit`)
    t.doesNotThrow(() => loadConfig(env), `${name}: its settings pass loadConfig in production`)
  }
  const ring = await loadKeyRing({ JWT_PRIVATE_KEY_FILE: keyFile, DATA_DIR: dir })
  t.equal(ring.signing.alg, 'EdDSA', 'the documented key command makes a key the service signs with')
})

// The scale profile's replicas and `auth` share the authdata volume and start together.
const KEY_WORKER = `
import { createInterface } from 'node:readline'
const { loadKeyRing } = await import(process.env.KEYS_MODULE)
for await (const dir of createInterface({ input: process.stdin })) {
  try { console.log((await loadKeyRing({ DATA_DIR: dir })).signing.kid) } catch (error) { console.log('failed: ' + error.message) }
}`

test('keys: when several instances start at once on one empty DATA_DIR, then all of them sign with the one key written there', async (t) => {
  const concurrent = await tempDir(t)
  const rings = await Promise.all(Array.from({ length: 8 }, async () => await loadKeyRing({ DATA_DIR: concurrent })))
  t.equal(new Set(rings.map(r => r.signing.kid)).size, 1, 'concurrent calls in one process: one key')

  const workers = Array.from({ length: 5 }, () => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', KEY_WORKER], {
    env: { PATH: process.env.PATH ?? '', KEYS_MODULE: join(REPO_ROOT, 'src', 'services', 'keys.ts') },
    stdio: ['pipe', 'pipe', 'inherit']
  }))
  t.teardown(() => { for (const worker of workers) worker.kill('SIGKILL') })
  const answers = workers.map(worker => createInterface({ input: worker.stdout })[Symbol.asyncIterator]())
  const dirs: string[] = []
  t.teardown(async () => { for (const dir of dirs) await rm(dir, { recursive: true, force: true }) })
  let agreed = 0
  for (let round = 0; round < 20; round++) {
    const dir = await mkdtemp(join(tmpdir(), 'auth-test-keys-'))
    dirs.push(dir)
    for (const worker of workers) worker.stdin.write(`${dir}\n`)
    const kids = await Promise.all(answers.map(async answer => String((await answer.next()).value)))
    if (new Set(kids).size === 1 && !kids[0].startsWith('failed') && kids[0] !== 'undefined') agreed++
    else t.fail(`round ${round}: ${kids.join(' | ')}`)
    const files = (await readdir(dir)).sort()
    if (files.join() !== 'jwt-signing-key.pem') t.fail(`round ${round}: ${files.join(', ')} left in DATA_DIR`)
  }
  for (const worker of workers) worker.stdin.end()
  t.equal(agreed, 20, 'five processes, twenty empty directories: one key each time, no half-written file read, no temporary file left')
})
