import type { FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'

const SENSITIVE_QUERY = /([?&](?:access_token|refresh_token|token|password|client_secret|code)=)[^&#]*/gi

/** Pino options: no header, body or secret-bearing query value is ever written. */
export function loggerOptions (config: Pick<Config, 'LOG_LEVEL'>): Exclude<FastifyServerOptions['logger'], boolean | undefined> {
  return {
    level: config.LOG_LEVEL,
    // Belt and braces: nothing here logs headers or bodies, but a future log call might.
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', '*.password', 'password', '*.access_token', 'access_token', '*.token'],
      censor: '[REDACTED]'
    },
    serializers: {
      req: (req: { method: string, url: string, ip?: string, id?: string }) => ({
        method: req.method,
        url: req.url.replace(SENSITIVE_QUERY, '$1[REDACTED]'),
        remoteAddress: req.ip
      })
    }
  }
}
