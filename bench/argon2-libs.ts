// Compares the two argon2 bindings at the same parameters, side by side in one run.
// Usage: npx tsx bench/argon2-libs.ts [rounds]
import argon2 from 'argon2'
import { hash as rsHash, verify as rsVerify, Algorithm } from '@node-rs/argon2'
import { cpus } from 'node:os'

const params = { memoryCost: 19456, timeCost: 2, parallelism: 1 }
const rounds = Number(process.argv[2] ?? 20)
const concurrency = cpus().length
const password = 'correct horse battery staple'

const libs = {
  argon2: {
    hash: () => argon2.hash(password, { type: argon2.argon2id, ...params }),
    verify: (h: string) => argon2.verify(h, password)
  },
  '@node-rs/argon2': {
    hash: () => rsHash(password, { algorithm: Algorithm.Argon2id, ...params }),
    verify: (h: string) => rsVerify(h, password)
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

async function sequential (fn: () => Promise<unknown>): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < rounds; i++) {
    const start = process.hrtime.bigint()
    await fn()
    times.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
  return median(times)
}

async function throughput (fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint()
  const total = rounds * concurrency
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < total) await fn()
  }))
  return total / (Number(process.hrtime.bigint() - start) / 1e9)
}

const rows: string[] = []
// Interleave the libraries over three passes so that noise on the shared box hits both.
const results: Record<string, { verify: number[], hash: number[], perSecond: number[] }> = {}
for (let pass = 0; pass < 3; pass++) {
  for (const [name, lib] of Object.entries(libs)) {
    const h = await lib.hash()
    const r = results[name] ??= { verify: [], hash: [], perSecond: [] }
    r.hash.push(await sequential(lib.hash))
    r.verify.push(await sequential(() => lib.verify(h)))
    r.perSecond.push(await throughput(() => lib.verify(h)))
  }
}
rows.push('| library | hash p50 ms | verify p50 ms | verifies/s at ' + concurrency + ' concurrent |', '|---|---|---|---|')
for (const [name, r] of Object.entries(results)) {
  rows.push(`| ${name} | ${median(r.hash).toFixed(1)} | ${median(r.verify).toFixed(1)} | ${median(r.perSecond).toFixed(1)} |`)
}
console.log(`argon2id m=${params.memoryCost} t=${params.timeCost} p=${params.parallelism}, ${rounds} rounds x 3 passes, node ${process.version}`)
console.log(rows.join('\n'))
