import { readdirSync, readFileSync } from 'node:fs'
import { test } from 'tap'
import { Algorithm } from '@node-rs/argon2'
import { HashPool, HashPoolBusy } from '../../src/services/hash-pool.js'

const options = { algorithm: Algorithm.Argon2id, memoryCost: 1024, timeCost: 1, parallelism: 1 }

/** The niceness of each of this process's threads (field 19 of /proc/self/task/<tid>/stat). */
function threadNiceness (): number[] {
  return readdirSync('/proc/self/task').map(tid => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])
  })
}

test('HashPool: when more jobs than workers arrive, then every one completes with a hash that verifies', async (t) => {
  const pool = new HashPool(2)
  t.teardown(async () => { await pool.close() })
  const passwords = Array.from({ length: 7 }, (_, i) => `password number ${i}`)
  const hashes = await Promise.all(passwords.map(async password => await pool.run({ operation: 'hash', password, options })))
  for (const [i, result] of hashes.entries()) {
    t.match(result.value, /^\$argon2id\$v=19\$m=1024,t=1,p=1\$/, `job ${i} hashed`)
    t.ok(result.seconds > 0, 'and timed')
    const right = await pool.run({ operation: 'verify', password: passwords[i], storedHash: result.value as string, options })
    const wrong = await pool.run({ operation: 'verify', password: passwords[(i + 1) % 7], storedHash: result.value as string, options })
    t.same([right.value, wrong.value], [true, false], `job ${i} verifies its own password only`)
  }
  const broken = await pool.run({ operation: 'verify', password: 'x', storedHash: 'not a hash', options })
  t.ok(broken.error, 'a malformed stored hash is an error result, not a crash')
})

test('HashPool: when its workers run, then they are reniced below the event loop (Linux)', async (t) => {
  const before = threadNiceness().filter(n => n === 10).length
  const pool = new HashPool(2)
  t.teardown(async () => { await pool.close() })
  await Promise.all([1, 2].map(async i => await pool.run({ operation: 'hash', password: `p${i}`, options })))
  t.equal(threadNiceness().filter(n => n === 10).length - before, 2, 'two threads at niceness 10')
  t.equal(threadNiceness()[0], 0, 'the main thread keeps its priority')
})

test('HashPool: when closed, then queued jobs are refused and new ones too', async (t) => {
  const pool = new HashPool(1)
  const slow = { ...options, memoryCost: 65536, timeCost: 3 }
  const settled = Promise.allSettled([1, 2, 3].map(async i => await pool.run({ operation: 'hash', password: `p${i}`, options: slow })))
  await pool.close()
  t.ok((await settled).every(s => s.status === 'rejected'), 'the running job and the queued ones are refused')
  await t.rejects(pool.run({ operation: 'hash', password: 'late', options }), /closed/)
})

test('HashPool: when the queue is full, then a new job is refused at once (HashPoolBusy) and the queued ones still complete', async (t) => {
  const pool = new HashPool(1, 10, 2)
  t.teardown(async () => { await pool.close() })
  // Slow enough that the one worker is still busy while the rest arrive.
  const slow = { ...options, memoryCost: 65536, timeCost: 3 }
  let finished = 0
  const accepted = [0, 1, 2].map(async i => await pool.run({ operation: 'hash', password: `p${i}`, options: slow }).finally(() => { finished++ }))
  await t.rejects(pool.run({ operation: 'hash', password: 'one too many', options: slow }), HashPoolBusy)
  t.equal(finished, 0, 'refused without waiting for any queued job')
  const results = await Promise.all(accepted)
  t.equal(results.filter(r => typeof r.value === 'string').length, 3, 'one running and two queued: all hashed')
})

test('HashPool: when the signal of a queued job aborts (its client has gone), then the job leaves the queue unhashed, rejected with the reason, and a running job whose signal aborts still finishes', async (t) => {
  const pool = new HashPool(1, 10, 1)
  t.teardown(async () => { await pool.close() })
  const slow = { ...options, memoryCost: 65536, timeCost: 3 }
  const gone = new Error('the client has gone')
  const runningClient = new AbortController()
  let runningSettled = false
  const running = pool.run({ operation: 'hash', password: 'running', options: slow }, runningClient.signal).finally(() => { runningSettled = true })
  const queuedClient = new AbortController()
  const queued = pool.run({ operation: 'hash', password: 'queued', options: slow }, queuedClient.signal)

  queuedClient.abort(gone)
  runningClient.abort(gone)
  await t.rejects(queued, gone, 'the queued job is rejected with the abort reason')
  t.equal(runningSettled, false, 'while the only worker still runs the first job: the queued one never reached it')
  const replacement = pool.run({ operation: 'hash', password: 'replacement', options })
  t.match((await running).value, /^\$argon2id\$/, 'the running job finished, abort or not')
  t.match((await replacement).value, /^\$argon2id\$/, 'the freed queue slot took another job (the queue holds one)')
  await t.rejects(pool.run({ operation: 'hash', password: 'late', options }, AbortSignal.abort(gone)), gone, 'a job whose client is already gone is refused at once')
})
