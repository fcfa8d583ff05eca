import { stopLoad } from './load.js'
import { log } from './progress.js'

let reason: string | undefined

/** The first call stops the load, so that the run fails at its next check and cleans up; a second one exits at once. */
export function interrupt (why: string): void {
  if (reason !== undefined) process.exit(130)
  reason = why
  log(`${why}: stopping`)
  stopLoad()
}

export const interrupted = (): boolean => reason !== undefined

export function checkInterrupted (): void {
  if (reason !== undefined) throw new Error(`interrupted by ${reason}`)
}
