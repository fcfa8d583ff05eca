import { randomBytes } from 'node:crypto'
import { buildApp } from './app.js'
import { loadConfig } from './config.js'

/**
 * The OpenAPI document, made from the route schemas by the same app the service runs, without a database and
 * without listening: the only source of truth is the code. Settings do not change the document.
 */
export async function generateDocument (): Promise<Record<string, unknown>> {
  const config = loadConfig({ NODE_ENV: 'development', LOG_LEVEL: 'silent', JWT_SECRET: randomBytes(32).toString('base64') })
  const app = await buildApp(config, { documentOnly: true })
  try {
    return app.swagger() as unknown as Record<string, unknown>
  } finally {
    await app.close()
  }
}

/** The committed form: two-space JSON with a final newline, so diffs of openapi.json read well. */
export function formatDocument (document: unknown): string {
  return JSON.stringify(document, null, 2) + '\n'
}
