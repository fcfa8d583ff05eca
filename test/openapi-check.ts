import { readFileSync } from 'node:fs'
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'

interface MediaType { schema?: unknown }
interface Operation { responses: Record<string, { content?: Record<string, MediaType> }> }
interface Document { paths: Record<string, Record<string, Operation>> }

/** The committed document: what generated clients are built from, so what every answer must agree with. */
export const committedDocument = JSON.parse(readFileSync(new URL('../openapi.json', import.meta.url), 'utf8')) as Document

const ajv = new Ajv2020({ strict: false, allErrors: true })
addFormats.default(ajv)
ajv.addSchema(committedDocument as object, 'openapi.json')

const routes = Object.keys(committedDocument.paths).map(template => ({
  template,
  pattern: new RegExp('^' + template.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+') + '$'),
  static: !template.includes('{')
})).sort((a, b) => Number(b.static) - Number(a.static))

const pointer = (...parts: string[]): string => parts.map(p => p.replaceAll('~', '~0').replaceAll('/', '~1')).join('/')
const validators = new Map<string, ValidateFunction>()

function validatorFor (ref: string): ValidateFunction {
  let validate = validators.get(ref)
  if (validate === undefined) {
    validate = ajv.compile({ $ref: ref })
    validators.set(ref, validate)
  }
  return validate
}

export interface ReceivedResponse {
  method: string
  url: string
  statusCode: number
  contentType: string | undefined
  body: string
}

/**
 * Checks one answer against the document: the path and method must be documented (routes the document hides,
 * such as /docs and /openapi.json, and unknown paths are not checked), the status must be one it declares, the
 * content type one it lists for that status, and the body must validate against that schema.
 * Returns what is wrong, or undefined.
 */
export function checkResponse (response: ReceivedResponse): string | undefined {
  const path = new URL(response.url, 'http://localhost').pathname
  const route = routes.find(r => r.pattern.test(path))
  const method = response.method.toLowerCase()
  // HEAD answers are GET's without a body; OPTIONS and unknown paths are not part of the API.
  if (route === undefined || method === 'head' || method === 'options') return undefined
  const where = `${response.method} ${path} -> ${response.statusCode}`
  const operation = committedDocument.paths[route.template][method]
  if (operation === undefined) return response.statusCode === 404 || response.statusCode === 405 ? undefined : `${where}: method not documented`
  const declared = operation.responses[String(response.statusCode)]
  if (declared === undefined) return `${where}: status not documented for this operation`
  if (declared.content === undefined) return response.body === '' ? undefined : `${where}: documented without a body, but answered one`
  const mediaType = response.contentType?.split(';')[0].trim()
  if (mediaType === undefined || declared.content[mediaType] === undefined) {
    return `${where}: content type ${mediaType ?? '(none)'} not documented (documented: ${Object.keys(declared.content).join(', ')})`
  }
  let body: unknown
  try {
    body = JSON.parse(response.body)
  } catch {
    return `${where}: body is not JSON`
  }
  const validate = validatorFor('openapi.json#' + pointer('', 'paths', route.template, method, 'responses', String(response.statusCode), 'content', mediaType, 'schema'))
  if (validate(body)) return undefined
  return `${where}: body does not match the documented schema: ${ajv.errorsText(validate.errors)}\n${response.body.slice(0, 500)}`
}
