import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'tap'
import { listFiles, REPO_ROOT } from '../helper.js'

/** Docker's .dockerignore rules: the last matching pattern wins, and a pattern matching a parent folder matches. */
function dockerignore (text: string): (path: string) => boolean {
  const patterns = text.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#')).map(line => {
    const exclusion = line.startsWith('!')
    const pattern = (exclusion ? line.slice(1) : line).trim().replace(/^\.?\//, '').replace(/\/$/, '')
    const source = pattern.split('**').map(part => part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('.*')
    return { exclusion, regex: new RegExp(`^${source}$`) }
  })
  return (path) => {
    const parts = path.split('/')
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'))
    let excluded = false
    for (const { exclusion, regex } of patterns) {
      if (candidates.some(c => regex.test(c))) excluded = !exclusion
    }
    return excluded
  }
}

test('Dockerfile: when the build context is filtered by .dockerignore, then every file the Dockerfile copies is kept and the rest stays out', async (t) => {
  const dockerfile = await readFile(join(REPO_ROOT, 'Dockerfile'), 'utf8')
  const excluded = dockerignore(await readFile(join(REPO_ROOT, '.dockerignore'), 'utf8'))
  const sources = [...new Set([...dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap(m => m[1].trim().split(/\s+/).slice(0, -1)))]
  t.ok(sources.length >= 4, `COPY sources: ${sources.join(' ')}`)
  for (const source of sources) {
    t.notOk(excluded(source), `${source} is in the context`)
    const files = await listFiles(join(REPO_ROOT, source)).catch(() => [] as string[])
    const dropped = files.filter(f => excluded(`${source}/${f}`))
    t.same(dropped, [], `nothing under ${source} is left out`)
  }
  for (const path of ['node_modules/fastify/package.json', 'dist/server.js', '.git/HEAD', '.env', 'data/pglite/x', 'test/helper.ts', 'README.md', 'docker-compose.yml', 'bench/results/x.json', 'artifacts/x.png']) {
    t.ok(excluded(path), `${path} stays out of the context`)
  }
  t.notOk(dockerignore('*\n!src\n')('src/app.ts'), 'the matcher re-includes a folder\'s files')
  t.ok(dockerignore('src\n')('src/app.ts'), 'the matcher excludes a folder\'s files')
})

test('Dockerfile: when the runtime stage is read, then it has production dependencies and compiled JS only, a non-root user, a readiness HEALTHCHECK and node as PID 1', async (t) => {
  const dockerfile = await readFile(join(REPO_ROOT, 'Dockerfile'), 'utf8')
  const stages = dockerfile.split(/^(?=FROM )/m).filter(s => s.startsWith('FROM '))
  t.ok(stages.length >= 2, 'multi-stage')
  const runtime = stages[stages.length - 1].split('\n').filter(line => !line.startsWith('#')).join('\n')
  const copiedFrom = [...runtime.matchAll(/^COPY --from=(\S+) \/app\/(\S+)/gm)].map(m => [m[1], m[2]])
  t.same(copiedFrom, [['prod-deps', 'node_modules'], ['build', 'dist']], 'node_modules from the prod-deps stage, dist from the build')
  const prodDeps = stages.find(s => /^FROM \S+ AS prod-deps/m.test(s)) ?? ''
  t.match(prodDeps, /npm ci --omit=dev/, 'prod-deps installs without devDependencies')
  t.notMatch(runtime, /\b(tsx|ts-node|--import|--loader|src\b)/, 'no TypeScript source or loader at run time')
  const user = /^USER (\S+)/m.exec(runtime)?.[1]
  t.ok(user !== undefined && user !== 'root' && user !== '0', `runs as ${user ?? 'root'}`)
  t.match(runtime, /^HEALTHCHECK [^\n]*(\\\n[^\n]*)*\/health\/ready/m, 'HEALTHCHECK on /health/ready')
  const cmd = /^CMD (.+)$/m.exec(runtime)?.[1] ?? ''
  const argv = JSON.parse(cmd) as string[]
  t.equal(argv[0], 'node', 'exec-form CMD: node itself is PID 1 and receives SIGTERM')
  t.equal(argv.at(-1), 'dist/server.js', 'the compiled server')
  t.ok(argv.slice(1, -1).every(a => a.startsWith('--')), `only node flags in between (${argv.slice(1, -1).join(' ')})`)
  t.match(dockerfile, /node dist\/migrate\.js/, 'the migrate step is documented')
})
