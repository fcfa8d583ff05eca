import { isIPv6 } from 'node:net'
import { join } from 'node:path'
import type { Config } from '../config.js'
import type { KeyRing } from '../services/keys.js'

/**
 * Where a browser finds the API documentation: under PUBLIC_URL when set, else on the address listened on; an address
 * of every interface (0.0.0.0, ::) is not one to browse to, so localhost stands for it.
 */
export function docsUrl (config: Pick<Config, 'HOST' | 'PUBLIC_URL'>, port: number): string {
  if (config.PUBLIC_URL !== undefined) return `${config.PUBLIC_URL.replace(/\/+$/, '')}/docs`
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : isIPv6(config.HOST) ? `[${config.HOST}]` : config.HOST
  return `http://${host}:${port}/docs`
}

/** Where the signing key came from, as loadKeyRing chooses it (services/keys.ts): a name or a path, never the key. */
export function signingKeySource (config: Pick<Config, 'JWT_PRIVATE_KEY' | 'JWT_PRIVATE_KEY_FILE' | 'JWT_SECRET' | 'DATA_DIR'>): string {
  if (config.JWT_PRIVATE_KEY_FILE !== undefined) return `JWT_PRIVATE_KEY_FILE ${config.JWT_PRIVATE_KEY_FILE}`
  if (config.JWT_PRIVATE_KEY !== undefined) return 'JWT_PRIVATE_KEY'
  if (config.JWT_SECRET !== undefined) return 'JWT_SECRET'
  return `generated, kept in ${join(config.DATA_DIR, 'jwt-signing-key.pem')}`
}

/** The start-up line's fields and words: where the docs are and which key signs (algorithm, kid, source). */
export function startUpReport (config: Config, keyRing: KeyRing, port: number): { fields: Record<string, unknown>, message: string } {
  const docs = docsUrl(config, port)
  const { alg, kid } = keyRing.signing
  const source = signingKeySource(config)
  return {
    fields: { docs, signing_key: { alg, kid, source } },
    message: `API documentation at ${docs}; tokens signed with ${alg}${kid !== undefined ? ` key ${kid}` : ''} (${source})`
  }
}
