import { chromium, type Browser } from 'playwright-core'

// Debian's chromium (apt-get install chromium), never a browser a test tool downloads. CHROMIUM_PATH points elsewhere.
export const EXECUTABLE = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
// Without the background-networking flags Chromium keeps dialling Google's hosts, which this network refuses.
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** A headless Chromium closed when the test ends; `args` add flags (a host-resolver rule, say). */
export async function launchBrowser (t: { teardown: (fn: () => unknown) => void }, args: string[] = []): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: EXECUTABLE, headless: true, args: [...FLAGS, ...args] })
  t.teardown(async () => { await browser.close() })
  return browser
}
