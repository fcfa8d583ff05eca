import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

export const SERVER = fileURLToPath(new URL('../src/server.ts', import.meta.url))
export const MIGRATE = fileURLToPath(new URL('../src/migrate.ts', import.meta.url))

export interface Running {
  child: ChildProcess
  url: string
  output: () => string
}

/** Starts the real server process with only the given environment and waits for it to listen. */
export async function start (env: Record<string, string>): Promise<Running> {
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
    if (match !== null) return { child, url: match[1], output: () => output }
    if (child.exitCode !== null) throw new Error(`server exited ${child.exitCode}: ${output}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  child.kill('SIGKILL')
  throw new Error(`server did not start: ${output}`)
}

export async function stop (server: Running): Promise<number | null> {
  if (server.child.exitCode !== null) return server.child.exitCode
  const exited = once(server.child, 'exit')
  server.child.kill('SIGTERM')
  const [code] = await exited
  return code as number | null
}
