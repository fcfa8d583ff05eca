/** The OpenAPI security scheme of every protected route: OAuth2 password flow, bearer access tokens. */
export const OAUTH2_SCHEME = 'OAuth2PasswordBearer'
/** The OpenAPI security scheme of the endpoints that authenticate service clients (RFC 6749 section 2.3.1). */
export const CLIENT_BASIC_SCHEME = 'ClientBasic'
