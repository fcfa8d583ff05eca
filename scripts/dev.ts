// `npm run dev`: the service (src/server.ts under tsx), restarted when a file under src/ or the .env in the working
// directory changes. A loop of its own because tsx watch ignores dotfiles and node --watch-path fails without a .env.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { watch } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const SERVER = fileURLToPath(new URL('../src/server.ts', import.meta.url))
const SOURCES = fileURLToPath(new URL('../src/', import.meta.url))
const TSX = import.meta.resolve('tsx')
const ORPHAN_GUARD = import.meta.resolve('./dev-child.ts')
// Past the service's own SHUTDOWN_GRACE_MS (10 s by default) it would have exited by itself.
const FORCE_AFTER_MS = 15_000
const SETTLE_MS = 150

let service: ChildProcess | undefined
let restarting = false
let stopping = false

const say = (line: string): void => { process.stderr.write(`[dev] ${line}\n`) }

function start (): void {
  // A process group of its own: a Ctrl-C reaches this loop (and npm), which passes it on once; twice would make the
  // service skip its graceful close. The IPC channel tells it when this loop is gone (scripts/dev-child.ts).
  const child = spawn(process.execPath, ['--import', TSX, '--import', ORPHAN_GUARD, SERVER], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'], detached: true })
  service = child
  child.on('exit', (code, signal) => {
    if (restarting || stopping) return
    say(`the service exited (${signal ?? `code ${code}`}): waiting for a change to src/ or .env`)
  })
}

async function stop (signal: NodeJS.Signals): Promise<void> {
  const child = service
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill(signal)
  const force = setTimeout(() => { child.kill('SIGKILL') }, FORCE_AFTER_MS)
  await exited
  clearTimeout(force)
}

async function restart (what: string): Promise<void> {
  if (stopping || restarting) return
  restarting = true
  say(`${what} changed: restarting`)
  await stop('SIGTERM')
  restarting = false
  if (!stopping) start()
}

// Editors write a file in several steps: one restart once they settle.
let timer: NodeJS.Timeout | undefined
function changed (what: string): void {
  clearTimeout(timer)
  timer = setTimeout(() => { restart(what).catch((error: unknown) => { say(`restart failed: ${(error as Error).message}`) }) }, SETTLE_MS)
}

watch(SOURCES, { recursive: true }, (_event, file) => { changed(join('src', String(file ?? ''))) })
// The directory, not the file: a .env created, replaced or removed counts too.
watch(process.cwd(), (_event, file) => { if (file === '.env') changed('.env') })

async function shutdown (signal: NodeJS.Signals): Promise<void> {
  if (stopping) return
  stopping = true
  clearTimeout(timer)
  await stop(signal)
  process.exit(0)
}
process.on('SIGINT', (signal) => { shutdown(signal).catch(() => { process.exit(1) }) })
process.on('SIGTERM', (signal) => { shutdown(signal).catch(() => { process.exit(1) }) })

start()
