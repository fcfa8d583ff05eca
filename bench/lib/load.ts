// autocannon runs against one server, and what the server spent on them: CPU from /proc/<pid>/stat, peak RSS
// sampled from /proc/<pid>/status, and the load generator's own CPU.
import { execFileSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import { alive, type Server } from './children.js'

const RSS_SAMPLE_MS = 100

export interface LoadFigures {
  rps: number
  p50: number
  p99: number
  /** From every response's latency (autocannon reports no p95); only for the loads that ask for it. */
  p95?: number
  errors: number
  timeouts: number
  non2xx: number
  ok: number
  /** Responses / autocannon's own duration: a cross-check of rps. */
  total: number
  seconds: number
}

export interface Measured {
  loads: LoadFigures[]
  seconds: number
  serverCpuPercent: number
  /** The kernel's part of serverCpuPercent (stime). */
  serverSystemCpuPercent: number
  peakRssMb: number
  loadGeneratorCpuPercent: number
}

export const clockTicks = readClockTicks()

function readClockTicks (): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
}

const activeCannons = new Set<autocannon.Instance>()

/** Stops every autocannon run under way: they end early and resolve with what they measured. */
export function stopLoad (): void {
  for (const instance of activeCannons) instance.stop()
}

/** One autocannon run; stopped anyway 30 s after its duration should have ended. `latencies` gets every response's ms. */
export async function cannon (options: autocannon.Options, latencies?: number[]): Promise<autocannon.Result> {
  return await new Promise((resolve, reject) => {
    const instance = autocannon({ timeout: 10, ...options }, (error, result) => {
      clearTimeout(guard)
      activeCannons.delete(instance)
      if (error !== null && error !== undefined) reject(error instanceof Error ? error : new Error(String(error)))
      else resolve(result)
    })
    activeCannons.add(instance)
    if (latencies !== undefined) instance.on('response', (_client, _status, _bytes, ms: number) => { latencies.push(ms) })
    // Called back asynchronously, after this line.
    const guard = setTimeout(() => { instance.stop() }, (Number(options.duration) + 30) * 1000)
  })
}

/** The runs side by side, with the server's CPU ticks and peak RSS around them; p95 for the runs flagged in `p95`. */
export async function measure (server: Server, runs: autocannon.Options[], p95: boolean[] = []): Promise<Measured> {
  const ticks0 = await cpuTimes(server.pid)
  const ownCpu0 = process.cpuUsage()
  const rss = rssSampler(server.pid)
  const t0 = performance.now()
  const latencies = runs.map((_, i) => p95[i] === true ? [] as number[] : undefined)
  const results = await Promise.all(runs.map(async (o, i) => await cannon(o, latencies[i])))
  const seconds = (performance.now() - t0) / 1000
  const ticks1 = await cpuTimes(server.pid)
  const ownCpu = process.cpuUsage(ownCpu0)
  const peakRssMb = await rss.stop()
  return {
    loads: results.map((r, i) => ({ ...figures(r), ...percentile95(latencies[i]) })),
    seconds,
    serverCpuPercent: (ticks1.user + ticks1.system - ticks0.user - ticks0.system) / clockTicks / seconds * 100,
    serverSystemCpuPercent: (ticks1.system - ticks0.system) / clockTicks / seconds * 100,
    peakRssMb,
    loadGeneratorCpuPercent: (ownCpu.user + ownCpu.system) / 1e6 / seconds * 100
  }
}

function percentile95 (latencies: number[] | undefined): { p95?: number } {
  if (latencies === undefined || latencies.length === 0) return {}
  const sorted = Float64Array.from(latencies).sort()
  return { p95: Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(0.95 * sorted.length) - 1)] * 100) / 100 }
}

function figures (r: autocannon.Result): LoadFigures {
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors, timeouts: r.timeouts, non2xx: r.non2xx, ok: r['2xx'], total: r.requests.total, seconds: r.duration }
}

/**
 * Waits until the server is idle (at most one clock tick of CPU in 200 ms), at most 3 s: requests the load
 * generator gave up on at the end of a run (logins queued on argon2) still finish on the server, and must not be
 * charged to the next measured window, nor be cut off by a shutdown.
 */
export async function drain (server: Server, boundMs = 3000): Promise<void> {
  const deadline = performance.now() + boundMs
  try {
    let before = await cpuTicks(server.pid)
    while (performance.now() < deadline && alive(server.child)) {
      await sleep(200)
      const now = await cpuTicks(server.pid)
      if (now - before <= 1) return
      before = now
    }
  } catch {}
}

export async function rssKb (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match === null ? 0 : Number(match[1])
}

/** utime and stime of the whole process (every thread), in clock ticks. */
async function cpuTimes (pid: number): Promise<{ user: number, system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after "(comm)": the first is field 3 (state); utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]), system: Number(fields[12]) }
}

async function cpuTicks (pid: number): Promise<number> {
  const { user, system } = await cpuTimes(pid)
  return user + system
}

/** Samples VmRSS until stopped; resolves to the peak in MB. */
function rssSampler (pid: number): { stop: () => Promise<number> } {
  let peak = 0
  const sample = async (): Promise<void> => {
    try { peak = Math.max(peak, await rssKb(pid)) } catch {}
  }
  sample().catch(() => {})
  const timer = setInterval(() => { sample().catch(() => {}) }, RSS_SAMPLE_MS)
  return {
    stop: async () => {
      clearInterval(timer)
      await sample()
      return peak / 1024
    }
  }
}
