import { availableParallelism } from 'node:os'
import { Algorithm, hash } from '@node-rs/argon2'
import { loadConfig } from '../../src/config.js'
import { median } from './median.js'
import { PASSWORD } from './scenarios.js'

const ARGON2_HASHES = 20
const ARGON2_BUDGET_MS = 10_000

export interface Argon2Limit {
  params: { memoryCost: number, timeCost: number, parallelism: number }
  hashes: number
  cpuMsPerHash: number
  wallMsPerHash: number
  cores: number
  logins: number
  /** `cores` hashes kept going at once for CEILING_SECONDS (threads that only hash): hashes per second. */
  ceiling: { threads: number, seconds: number, hashes: number, perSecond: number }
}

const CEILING_SECONDS = 5

/**
 * Sequential hashes in this process at the service's parameters: CPU time per hash (process.cpuUsage counts libuv's
 * pool threads too) and wall time per hash, medians. No process on this box can verify passwords faster than
 * cores / CPU seconds per hash, so that is the ceiling for logins/s.
 */
export async function argon2Limit (): Promise<Argon2Limit> {
  const c = loadConfig({
    ARGON2_MEMORY_KIB: process.env.ARGON2_MEMORY_KIB,
    ARGON2_TIME_COST: process.env.ARGON2_TIME_COST,
    ARGON2_PARALLELISM: process.env.ARGON2_PARALLELISM
  })
  const params = { memoryCost: c.ARGON2_MEMORY_KIB, timeCost: c.ARGON2_TIME_COST, parallelism: c.ARGON2_PARALLELISM }
  const options = { algorithm: Algorithm.Argon2id, ...params }
  await hash(PASSWORD, options) // warm-up: thread pool, first allocation
  const cpu: number[] = []
  const wall: number[] = []
  const deadline = performance.now() + ARGON2_BUDGET_MS
  for (let i = 0; i < ARGON2_HASHES && performance.now() < deadline; i++) {
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    await hash(PASSWORD, options)
    wall.push(performance.now() - t0)
    const used = process.cpuUsage(cpu0)
    cpu.push((used.user + used.system) / 1000)
  }
  const cores = availableParallelism()
  const cpuMsPerHash = median(cpu)
  return { params, hashes: cpu.length, cpuMsPerHash, wallMsPerHash: median(wall), cores, logins: cores / (cpuMsPerHash / 1000), ceiling: await hashingCeiling(cores, options) }
}

/**
 * What `threads` threads that do nothing but hash reach on this box: as many hashes in flight as threads (each on a
 * libuv pool thread), for CEILING_SECONDS, counted. A login can at best match it; the service is measured against it.
 */
async function hashingCeiling (threads: number, options: Parameters<typeof hash>[1]): Promise<Argon2Limit['ceiling']> {
  const t0 = performance.now()
  const deadline = t0 + CEILING_SECONDS * 1000
  let hashes = 0
  await Promise.all(Array.from({ length: threads }, async () => {
    while (performance.now() < deadline) {
      await hash(PASSWORD, options)
      hashes++
    }
  }))
  const seconds = (performance.now() - t0) / 1000
  return { threads, seconds, hashes, perSecond: hashes / seconds }
}
