/** The OpenAPI security scheme of every protected route: OAuth2 password flow, bearer access tokens. */
export const OAUTH2_SCHEME = 'OAuth2PasswordBearer'

/** A protected route's `security`: a valid access token, no scope beyond it. */
export const bearerSecurity = [{ [OAUTH2_SCHEME]: [] }]
