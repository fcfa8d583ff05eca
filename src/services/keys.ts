import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export type Algorithm = 'HS256' | 'EdDSA' | 'ES256' | 'RS256'

export interface PublicJwk {
  kty: string
  kid: string
  alg: Algorithm
  use: 'sig'
  [member: string]: string
}

/** One key that verifies tokens; `jwk` is what the JWKS publishes (never for HS256). */
export interface VerificationKey {
  kid: string | undefined
  alg: Algorithm
  key: string
  jwk?: PublicJwk
}

export interface KeyRing {
  signing: { kid: string | undefined, alg: Algorithm, key: string }
  verification: VerificationKey[]
  jwks: { keys: PublicJwk[] }
}

export interface KeySettings {
  JWT_SECRET?: string
  JWT_PRIVATE_KEY?: string
  JWT_PRIVATE_KEY_FILE?: string
  JWT_VERIFY_KEYS?: string
  JWT_VERIFY_KEYS_FILE?: string
  DATA_DIR: string
}

export class KeyError extends Error {}

function algorithmOf (key: KeyObject): Algorithm {
  const type = key.asymmetricKeyType
  if (type === 'ed25519') return 'EdDSA'
  if (type === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256'
  if (type === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) return 'RS256'
  throw new KeyError(`unsupported key: ${type ?? 'unknown'} (use Ed25519, EC P-256, or RSA of at least 2048 bits)`)
}

const THUMBPRINT_MEMBERS: Record<string, string[]> = { OKP: ['crv', 'kty', 'x'], EC: ['crv', 'kty', 'x', 'y'], RSA: ['e', 'kty', 'n'] }

/** RFC 7638 thumbprint: a kid derived from the key itself, the same wherever it is computed. */
function thumbprint (jwk: Record<string, unknown>): string {
  const members = THUMBPRINT_MEMBERS[String(jwk.kty)] ?? []
  const canonical = JSON.stringify(Object.fromEntries(members.map(m => [m, jwk[m]])))
  return createHash('sha256').update(canonical).digest('base64url')
}

function verificationKey (publicKey: KeyObject, kid?: string): VerificationKey {
  const alg = algorithmOf(publicKey)
  const exported = publicKey.export({ format: 'jwk' }) as Record<string, string>
  const id = kid ?? thumbprint(exported)
  const members = Object.fromEntries((THUMBPRINT_MEMBERS[exported.kty] ?? []).map(m => [m, exported[m]]))
  return {
    kid: id,
    alg,
    key: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    jwk: { ...members, kty: exported.kty, kid: id, alg, use: 'sig' }
  }
}

/** Keys from text: PEM blocks (private or public), one JWK, or a JWK Set. Environment values may carry "\n". */
export function parseKeys (text: string, wantPrivate: boolean): Array<{ key: KeyObject, kid?: string }> {
  const normalized = text.includes('\\n') && !text.includes('\n') ? text.replaceAll('\\n', '\n') : text
  const trimmed = normalized.trim()
  if (trimmed.startsWith('{')) {
    let parsed: { keys?: unknown[] }
    try {
      parsed = JSON.parse(trimmed)
    } catch {
      throw new KeyError('is neither PEM nor valid JWK JSON')
    }
    const jwks = (Array.isArray(parsed.keys) ? parsed.keys : [parsed]) as Array<Record<string, unknown> & { kid?: string }>
    return jwks.map(jwk => {
      const kid = typeof jwk.kid === 'string' ? jwk.kid : undefined
      const key = wantPrivate || typeof jwk.d === 'string'
        ? createPrivateKey({ key: jwk as never, format: 'jwk' })
        : createPublicKey({ key: jwk as never, format: 'jwk' })
      return { key, kid }
    })
  }
  const blocks = trimmed.match(/-----BEGIN [A-Z ]+-----[\s\S]+?-----END [A-Z ]+-----/g) ?? []
  if (blocks.length === 0) throw new KeyError('is neither PEM nor JWK JSON')
  return blocks.map(block => ({ key: block.includes('PRIVATE KEY') ? createPrivateKey(block) : createPublicKey(block) }))
}

async function readSetting (value: string | undefined, file: string | undefined, name: string): Promise<string | undefined> {
  if (value !== undefined) return value
  if (file === undefined) return undefined
  try {
    return await readFile(file, 'utf8')
  } catch (error) {
    throw new KeyError(`${name}_FILE: cannot read ${file}: ${(error as Error).message}`)
  }
}

/** With no key and no secret (never in production: the config refuses that), an Ed25519 key kept in DATA_DIR. */
async function generatedKey (dataDir: string): Promise<string> {
  const file = join(dataDir, 'jwt-signing-key.pem')
  try {
    return await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  await mkdir(dataDir, { recursive: true })
  const { privateKey } = generateKeyPairSync('ed25519')
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  // Replicas sharing DATA_DIR start at once: the key is written whole under a name of our own, then linked into
  // place, which fails if another process got there first. Nobody ever reads a half-written file.
  const temporary = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  await writeFile(temporary, pem, { mode: 0o600, flag: 'wx' })
  try {
    await link(temporary, file)
    return pem
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    return await readFile(file, 'utf8')
  } finally {
    await rm(temporary, { force: true })
  }
}

/**
 * The signing key and every key that verifies. JWT_PRIVATE_KEY signs when set (JWT_SECRET, if also set, then only
 * verifies: a way off HS256); else JWT_SECRET signs with HS256; else a generated Ed25519 key. JWT_VERIFY_KEYS adds
 * keys that verify but never sign: the previous key during a rotation.
 */
export async function loadKeyRing (settings: KeySettings): Promise<KeyRing> {
  const privateText = await readSetting(settings.JWT_PRIVATE_KEY, settings.JWT_PRIVATE_KEY_FILE, 'JWT_PRIVATE_KEY')
  const verifyText = await readSetting(settings.JWT_VERIFY_KEYS, settings.JWT_VERIFY_KEYS_FILE, 'JWT_VERIFY_KEYS')
  const verification: VerificationKey[] = []
  let signing: KeyRing['signing']

  const secret = settings.JWT_SECRET
  const hmac: VerificationKey | undefined = secret !== undefined ? { kid: undefined, alg: 'HS256', key: secret } : undefined

  if (privateText !== undefined || secret === undefined) {
    const text = privateText ?? await generatedKey(settings.DATA_DIR)
    let own: VerificationKey
    try {
      const parsed = parseKeys(text, true)
      if (parsed.length !== 1 || parsed[0].key.type !== 'private') throw new KeyError('must hold exactly one private key')
      own = verificationKey(createPublicKey(parsed[0].key), parsed[0].kid)
      signing = { kid: own.kid, alg: own.alg, key: parsed[0].key.export({ format: 'pem', type: 'pkcs8' }).toString() }
    } catch (error) {
      throw new KeyError(`JWT_PRIVATE_KEY: ${(error as Error).message}`)
    }
    verification.push(own)
    if (hmac !== undefined) verification.push(hmac)
  } else {
    signing = { kid: undefined, alg: 'HS256', key: secret }
    verification.push(hmac as VerificationKey)
  }

  if (verifyText !== undefined) {
    try {
      for (const { key, kid } of parseKeys(verifyText, false)) {
        const extra = verificationKey(key.type === 'private' ? createPublicKey(key) : key, kid)
        if (!verification.some(v => v.kid === extra.kid)) verification.push(extra)
      }
    } catch (error) {
      throw new KeyError(`JWT_VERIFY_KEYS: ${(error as Error).message}`)
    }
  }

  return {
    signing,
    verification,
    jwks: { keys: verification.flatMap(v => v.jwk !== undefined ? [v.jwk] : []) }
  }
}
