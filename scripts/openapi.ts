// `npm run openapi`: writes openapi.json from the route schemas, and the TypeScript types that clients generate
// from it (test/generated/openapi.ts, which the client test compiles against). Needs no database, opens no port.
// `npm run openapi -- --check`: writes nothing; exits 1 if either committed file differs from what the code makes.
import { readFile, writeFile } from 'node:fs/promises'
import { generateFiles } from './openapi-files.js'

const check = process.argv.includes('--check')
let stale = 0
for (const { name, file, content } of await generateFiles()) {
  const current = await readFile(file, 'utf8').catch(() => undefined)
  if (current === content) {
    console.log(`${name} is up to date`)
  } else if (check) {
    console.error(`${name} differs from what the code generates: run npm run openapi and commit it`)
    stale += 1
  } else {
    await writeFile(file, content)
    console.log(`wrote ${name}`)
  }
}
process.exitCode = stale > 0 ? 1 : 0
