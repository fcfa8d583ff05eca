import { readFileSync } from 'node:fs'
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { ProblemSchema } from '../schemas/problem.js'
import { OAuthErrorSchema, TokenResponseSchema } from '../schemas/oauth.js'
import { AcceptedSchema, UserSchema } from '../schemas/user.js'
import { SessionSchema } from '../schemas/session.js'
import { AdminUserSchema, RoleSchema } from '../schemas/admin.js'
import { CLIENT_BASIC_SCHEME, OAUTH2_SCHEME } from '../schemas/security.js'
import { ADMIN_SCOPES, type SERVICE_SCOPES } from '../services/scopes.js'

// The service's own scopes; roles that administrators define may grant others, for other services to check.
const SCOPE_DESCRIPTIONS: Record<(typeof ADMIN_SCOPES)[number] | (typeof SERVICE_SCOPES)[number], string> = {
  'users:read': 'Read users and their sessions (administration)',
  'users:write': 'Create, change, disable and delete users; end their sessions (administration)',
  'roles:write': 'Define roles and their scopes (administration)',
  'clients:read': 'List service clients (administration)',
  'clients:write': 'Register and delete service clients, rotate their secrets (administration)',
  'sessions:ended': 'Read the ended-session feed (services that verify tokens themselves)'
}

// src/plugins and dist/plugins are both two levels below the package root.
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

export default fp(async (app) => {
  for (const schema of [ProblemSchema, OAuthErrorSchema, TokenResponseSchema, UserSchema, AcceptedSchema, SessionSchema, AdminUserSchema, RoleSchema]) app.addSchema(schema)

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Auth service',
        version,
        description: 'Registration, OAuth2 password login and JWT-protected routes. Errors are RFC 9457 problem details, ' +
          'except at the token endpoint, which answers RFC 6749 errors.'
      },
      // The default made explicit: the API is served from the same origin as the document.
      servers: [{ url: '/', description: 'This service' }],
      tags: [
        { name: 'auth', description: 'Registration and tokens' },
        { name: 'users', description: 'The signed-in user' },
        { name: 'account', description: 'Password reset and email verification, by links sent in email' },
        { name: 'admin', description: 'Administration of users, roles and service clients (scopes users:read, users:write, roles:write, clients:read, clients:write)' },
        { name: 'sessions', description: 'The ended-session feed, for services that verify tokens themselves (scope sessions:ended)' },
        { name: 'health', description: 'Liveness and readiness' }
      ],
      components: {
        securitySchemes: {
          [OAUTH2_SCHEME]: {
            type: 'oauth2',
            description: 'Log in with a username (or email) and password; the token endpoint also accepts JSON.',
            flows: { password: { tokenUrl: '/auth/token', refreshUrl: '/auth/token', scopes: SCOPE_DESCRIPTIONS } }
          },
          [CLIENT_BASIC_SCHEME]: {
            type: 'http',
            scheme: 'basic',
            description: 'A service client\'s id and secret (RFC 6749 section 2.3.1); `client_secret_post` works too.'
          }
        }
      }
    },
    // Components get the names of the schemas' $id instead of def-0, def-1...
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) }
  })

  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { persistAuthorization: true, docExpansion: 'list' },
    staticCSP: true,
    // The library's strict policy minus upgrade-insecure-requests: over plain http on any name but localhost, the
    // browser would fetch the page's own assets over https and show a blank page.
    transformStaticCSP: (header) => header.split(';').map(d => d.trim()).filter(d => d !== '' && d !== 'upgrade-insecure-requests').join('; ')
  })

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}, { name: 'swagger' })
