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
}

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
  return { params, hashes: cpu.length, cpuMsPerHash, wallMsPerHash: median(wall), cores, logins: cores / (cpuMsPerHash / 1000) }
}
