import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { test } from 'tap'
import { REPO_ROOT } from '../helper.js'

/** The markdown the repository publishes: the README, the changelog, docs/ and each package's README. */
async function documents (): Promise<string[]> {
  const docs = (await readdir(join(REPO_ROOT, 'docs'))).filter(f => f.endsWith('.md')).map(f => join('docs', f))
  const packages = (await readdir(join(REPO_ROOT, 'packages')))
    .map(p => join('packages', p, 'README.md')).filter(f => existsSync(join(REPO_ROOT, f)))
  return ['README.md', 'CHANGELOG.md', ...docs, ...packages]
}

const withoutFences = (markdown: string): string => markdown.replace(/^(```|~~~)[\s\S]*?^\1[^\n]*$/gm, '')

/** Text outside fenced code blocks and inline code spans, where a link is a link. */
const prose = (markdown: string): string => withoutFences(markdown).replace(/`[^`\n]*`/g, '')

/** GitHub's heading anchors: lowercased, punctuation but `-` and `_` dropped, spaces to `-`, repeats numbered. */
export function anchorsOf (markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  for (const [, heading] of withoutFences(markdown).replace(/`([^`\n]*)`/g, '$1').matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const slug = heading.replace(/<[^>]+>/g, '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    anchors.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return anchors
}

/** Every inline link and image target that is not a URL with a scheme. */
function relativeLinks (markdown: string): string[] {
  return [...prose(markdown).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)]
    .map(m => m[1]).filter(target => !/^[a-z][a-z0-9+.-]*:/i.test(target))
}

test('docs links: when every relative link and #anchor of the published markdown is followed, then each names an existing file and heading', async (t) => {
  const files = await documents()
  t.ok(files.includes('docs/configuration.md') && files.includes('packages/fastify-auth-verifier/README.md'), 'the documents are found')
  let checked = 0
  for (const file of files) {
    const text = await readFile(join(REPO_ROOT, file), 'utf8')
    for (const link of relativeLinks(text)) {
      const [path, anchor] = link.split('#', 2) as [string, string | undefined]
      const target = path === '' ? join(REPO_ROOT, file) : join(REPO_ROOT, dirname(file), decodeURIComponent(path))
      const where = `${file}: ${link}`
      checked++
      if (!target.startsWith(REPO_ROOT) || !existsSync(target)) {
        t.fail(`${where}: ${relative(REPO_ROOT, target)} does not exist`)
        continue
      }
      if (anchor !== undefined && target.endsWith('.md')) {
        t.ok(anchorsOf(await readFile(target, 'utf8')).has(anchor), `${where}: a heading gives #${anchor}`)
      }
    }
  }
  t.ok(checked > 40, `links were found and followed (${checked})`)
})

test('docs links: when headings are turned into anchors, then they follow GitHub\'s rules', async (t) => {
  const anchors = anchorsOf('# Tokens: access tokens, key rotation\n## `GET /users/me` answers\n## Run\n## Run\n```sh\n# not a heading\n```\n')
  t.same([...anchors], ['tokens-access-tokens-key-rotation', 'get-usersme-answers', 'run', 'run-1'])
})
