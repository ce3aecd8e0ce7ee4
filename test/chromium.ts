/**
 * Launches Debian's Chromium headless through playwright-core, with the flags
 * this machine needs (no sandbox as root; no background networking, which the
 * closed network would refuse). Never downloads a browser: a missing one
 * fails the test with the command that installs it.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchChromium(): Promise<Browser> {
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium is not installed at ${CHROMIUM}: run \`apt-get install chromium\` (as .ci/run does); ` +
      'the browser tests never download a browser',
  );
  return chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS, timeout: 30_000 });
}
