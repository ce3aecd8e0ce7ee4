/**
 * Launches Debian's Chromium headless through playwright-core, with the flags
 * this machine needs (no sandbox as root; no background networking, which the
 * closed network would refuse). Never downloads a browser: the suites that
 * need one are skipped without it (see programs.ts), or fail under CI.
 */
import { chromium, type Browser } from 'playwright-core';
import { CHROMIUM, requireProgram } from './programs.js';

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

/** Debian's Chromium, found on PATH; throws with the install command when it is missing. */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: requireProgram(CHROMIUM), args: LAUNCH_ARGS, timeout: 30_000 });
}
