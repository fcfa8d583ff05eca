import { parseArgs } from 'node:util'

export interface RunOptions {
  durationSeconds: number
  warmupSeconds: number
  rounds: number
  /**
   * The large size of the scale scenarios: users seeded straight into a database of its own (with as many sessions, a
   * tenth of them recently ended), measured beside a database of SMALL_USERS; 0: no scale scenarios.
   */
  users: number
  /** Minutes of the soak scenario (--soak): when above 0, the run is the soak alone. */
  soakMinutes: number
}

/** The small size the scale scenarios compare the large one with. */
export const SMALL_USERS = 1000

const usage = 'usage: npm run bench [-- --duration seconds (default 10)] [--warmup seconds] [--rounds n (default 1)] [--users n (default 1000000; 0: no scale scenarios)] [--soak minutes]'

/** --duration, --warmup, --rounds, --users and --soak; exits with 2 and the usage on anything else. */
export function readRunOptions (): RunOptions {
  let args
  try {
    args = parseArgs({ options: { duration: { type: 'string' }, warmup: { type: 'string' }, rounds: { type: 'string' }, users: { type: 'string' }, soak: { type: 'string' } } }).values
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n${usage}`)
    process.exit(2)
  }
  // Whole seconds: autocannon's req/s is the mean of per-second samples.
  const durationSeconds = Math.round(numberOption(args.duration, 'duration', 10, 1, 300))
  return {
    durationSeconds,
    warmupSeconds: numberOption(args.warmup, 'warmup', Math.min(1, durationSeconds / 2), 0, 30),
    rounds: Math.round(numberOption(args.rounds, 'rounds', 1, 1, 10)),
    users: Math.round(numberOption(args.users, 'users', 1_000_000, 0, 2_000_000)),
    soakMinutes: Math.round(numberOption(args.soak, 'soak', 0, 0, 120))
  }
}

function numberOption (value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n < min || n > max) {
    console.error(`bench: --${name} must be a number from ${min} to ${max} (got ${value})\n${usage}`)
    process.exit(2)
  }
  return n
}
