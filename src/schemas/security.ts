/** The OpenAPI security scheme of every protected route: OAuth2 password flow, bearer access tokens. */
export const OAUTH2_SCHEME = 'OAuth2PasswordBearer'
