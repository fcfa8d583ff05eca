import { readFileSync, unlinkSync } from 'node:fs'
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/** Another live process holds the embedded database's directory: PGlite's files take one process at a time. */
export class DataDirLockedError extends Error {
  constructor (readonly dir: string, readonly pid: number) {
    super(`another auth-service process (pid ${pid}) is using DATA_DIR=${dir}: stop it, or set DATA_DIR to another directory`)
    this.name = 'DataDirLockedError'
  }
}

export const LOCK_FILE = 'pglite.lock'
// A lock file without a pid is one being written right now, unless it is older than this (its writer died first).
const UNWRITTEN_GRACE_MS = 2000
// How long to wait for another starter's takeover (milliseconds, normally) before giving up.
const TAKEOVER_WAIT_MS = 30_000

// Lock files this process holds or is taking: a second open of the same directory here is refused like any other.
const held = new Set<string>()
let exitHookInstalled = false

/**
 * Takes DATA_DIR for this process: `<dir>/pglite.lock`, created exclusively, holds our pid. A lock whose process is
 * alive is refused (DataDirLockedError); one whose process is gone (a crash, SIGKILL) is taken over. Resolves to the
 * function that releases it; on exit the lock is released anyway. Pids are only meaningful within one pid namespace:
 * two containers sharing a volume are not told apart.
 */
export async function lockDataDir (dir: string): Promise<() => Promise<void>> {
  const path = resolve(join(dir, LOCK_FILE))
  if (held.has(path)) throw new DataDirLockedError(dir, process.pid)
  held.add(path)
  installExitHook()
  try {
    await mkdir(dir, { recursive: true })
    const deadline = Date.now() + TAKEOVER_WAIT_MS
    while (!(await createExclusive(path))) {
      const holder = await readHolder(path)
      if (holder !== undefined) {
        if (holder.pid !== undefined && isAlive(holder.pid)) throw new DataDirLockedError(dir, holder.pid)
        if (holder.pid === undefined && holder.ageMs < UNWRITTEN_GRACE_MS) await sleep(20)
        else await removeStale(path, holder.content)
      }
      if (Date.now() > deadline) throw new Error(`could not lock DATA_DIR=${dir} within ${TAKEOVER_WAIT_MS / 1000} s: ${path} keeps changing`)
    }
  } catch (error) {
    held.delete(path)
    throw error
  }
  return async () => {
    if (!held.delete(path)) return
    const holder = await readHolder(path)
    // Only our own lock: one removed by hand and taken by another process since stays theirs.
    if (holder?.pid === process.pid) await unlink(path).catch(ignoreMissing)
  }
}

/** Creates the file with our pid; false when it exists. */
async function createExclusive (path: string): Promise<boolean> {
  let file
  try {
    file = await open(path, 'wx')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
  try {
    await file.writeFile(`${process.pid}\n`)
  } finally {
    await file.close()
  }
  return true
}

interface Holder { content: string, pid?: number, ageMs: number }

async function readHolder (path: string): Promise<Holder | undefined> {
  try {
    const [content, info] = await Promise.all([readFile(path, 'utf8'), stat(path)])
    return { content, pid: pidOf(content), ageMs: Date.now() - info.mtimeMs }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

const pidOf = (content: string): number | undefined => /^\d+\n$/.test(content) ? Number(content.trim()) : undefined

function isAlive (pid: number): boolean {
  // Our own pid in a lock we are not holding is a previous process's: a container restarted on the same volume runs as
  // pid 1 again (this process's own locks never get here: see held).
  if (pid === process.pid) return false
  try {
    process.kill(pid, 0)
  } catch (error) {
    // EPERM: it exists, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
  return !isZombie(pid)
}

// A killed process its parent has not yet reaped still answers kill(pid, 0), but holds no files (Linux only).
function isZombie (pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return false
  }
}

/**
 * Removes a stale lock, if it is still the one we read. Two starters that found the same stale lock must not both take
 * it over: the second could delete the first's fresh lock. So removing is done only under `<lock>.takeover`, itself
 * created exclusively, and after reading the lock again (a fresh lock is never removed there: its holder is alive).
 * A takeover file left by a process that died within those few milliseconds is removed when its pid is dead.
 */
async function removeStale (path: string, staleContent: string): Promise<void> {
  const guard = `${path}.takeover`
  if (!(await createExclusive(guard))) {
    const other = await readHolder(guard)
    const abandoned = other !== undefined && (other.pid !== undefined ? !isAlive(other.pid) : other.ageMs >= UNWRITTEN_GRACE_MS)
    if (abandoned) await unlink(guard).catch(ignoreMissing)
    else await sleep(20)
    return
  }
  try {
    if ((await readHolder(path))?.content === staleContent) await unlink(path).catch(ignoreMissing)
  } finally {
    await unlink(guard).catch(ignoreMissing)
  }
}

function ignoreMissing (error: NodeJS.ErrnoException): void {
  if (error.code !== 'ENOENT') throw error
}

// process.exit() and a normal end run no async code: release synchronously (a SIGKILL leaves a stale lock instead).
function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const path of held) {
      try {
        if (pidOf(readFileSync(path, 'utf8')) === process.pid) unlinkSync(path)
      } catch {}
    }
  })
}
