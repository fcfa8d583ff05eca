// How the image runs node, read from the Dockerfile so that nothing that imitates the image can drift from it: its
// `ENV NODE_OPTIONS` and the flags between "node" and the script in its exec-form CMD.
// Used by the benchmark harness (import) and .ci/prod-smoke.sh (`tsx scripts/image-runtime.ts flags|node-options`).
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export interface ImageRuntime { nodeOptions: string, flags: string[], script: string }

export function imageRuntime (dockerfile = readFileSync(fileURLToPath(new URL('../Dockerfile', import.meta.url)), 'utf8')): ImageRuntime {
  const nodeOptions = /^ENV NODE_OPTIONS=(.*)$/m.exec(dockerfile)?.[1].trim() ?? ''
  const cmd = /^CMD (\[.*\])\s*$/m.exec(dockerfile)?.[1]
  const argv = cmd === undefined ? [] : JSON.parse(cmd) as string[]
  if (argv[0] !== 'node' || argv.length < 2) throw new Error('Dockerfile: expected an exec-form CMD ["node", ...flags, script]')
  return { nodeOptions, flags: argv.slice(1, -1), script: argv[argv.length - 1] }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const runtime = imageRuntime()
  const what = process.argv[2]
  if (what === 'flags') console.log(runtime.flags.join(' '))
  else if (what === 'node-options') console.log(runtime.nodeOptions)
  else {
    console.error('usage: tsx scripts/image-runtime.ts flags|node-options')
    process.exit(2)
  }
}
