/**
 * The chat demo (examples/chat-server.ts) driven by a real browser: Debian's
 * headless Chromium through playwright-core. Two pages chat through the UI
 * and each sees the other's message. Chromium comes from apt (`apt-get install
 * chromium`, done by .ci/run); the test fails, never downloads, without it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from './chromium.js';
import { CHROMIUM, skipWithout } from './programs.js';
import { chatUrl, startChat } from '../examples/chat-server.js';
import type { Server } from '../src/index.js';

/** Upper bound for any single wait on the page. */
const UI_TIMEOUT = 10_000;

/** What went wrong inside a page: script errors, console errors, failed or foreign requests. */
interface PageProblems {
  problems: string[];
}

/** Opens the demo in a fresh browser context (its own cookies and storage, like a second user). */
async function openChat(browser: Browser, url: string): Promise<Page & PageProblems> {
  const context = await browser.newContext();
  const page = (await context.newPage()) as Page & PageProblems;
  page.problems = [];
  page.setDefaultTimeout(UI_TIMEOUT);
  page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') page.problems.push(`console error: ${message.text()}`);
  });
  page.on('requestfailed', (request) => page.problems.push(`request failed: ${request.url()}`));
  page.on('request', (request) => {
    if (!request.url().startsWith(url)) page.problems.push(`request outside the demo: ${request.url()}`);
  });
  const response = await page.goto(url, { timeout: UI_TIMEOUT });
  assert.equal(response?.status(), 200);
  return page;
}

/** Waits until the page's status shows it is connected; returns its fd as the page shows it. */
async function connectedFd(page: Page): Promise<number> {
  const status = page.locator('#status[data-state="open"]');
  await status.waitFor({ state: 'visible' });
  const match = /connected as #(\d+)/.exec(await status.innerText());
  assert.ok(match, `unexpected status text: ${await status.innerText()}`);
  return Number(match[1]);
}

/** Types `text` in the page's box and clicks Send, as a user would. */
async function sendThroughUi(page: Page, text: string): Promise<void> {
  await page.fill('#message', text);
  await page.click('#send');
}

/** Waits for a chat message from `from` containing `text` to appear in the page's log. */
async function seeMessage(page: Page, from: number, text: string): Promise<void> {
  await page.locator(`#log li.message[data-from="${from}"]`, { hasText: text }).waitFor({ state: 'visible' });
}

describe('chat demo in headless Chromium', { skip: skipWithout(CHROMIUM) }, () => {
  let server: Server;
  let browser: Browser | undefined;
  let url: string;

  before(async () => {
    server = await startChat({ host: '127.0.0.1', port: 0, log: () => {} });
    url = chatUrl('127.0.0.1', server.port);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('two pages chat through the UI and each sees the other\'s message', async (t) => {
    browser = await launchChromium();

    const alice = await openChat(browser, url);
    const bob = await openChat(browser, url);
    const aliceFd = await connectedFd(alice);
    const bobFd = await connectedFd(bob);
    assert.notEqual(aliceFd, bobFd);
    assert.equal(server.stats().connections, 2);

    // Alice learns that Bob joined after her.
    await alice.locator('#log li.system', { hasText: `#${bobFd} joined` }).waitFor();

    await sendThroughUi(alice, 'hello from alice <b>not bold</b>');
    await seeMessage(bob, aliceFd, 'hello from alice <b>not bold</b>');
    await seeMessage(alice, aliceFd, 'hello from alice'); // the sender gets it too
    assert.equal(await bob.locator('#log b').count(), 0, 'message text must not be parsed as HTML');
    assert.equal(await alice.inputValue('#message'), '', 'the box is cleared after sending');

    await sendThroughUi(bob, '你好 from bob');
    await seeMessage(alice, bobFd, '你好 from bob');
    await seeMessage(bob, bobFd, '你好 from bob');

    // Set WAVECAST_SCREENSHOT=/some/file.png to look at the page as the test saw it.
    const shot = process.env.WAVECAST_SCREENSHOT;
    const png = await alice.screenshot({ fullPage: true, ...(shot ? { path: shot } : {}) });
    assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'the page renders to a PNG');
    if (shot) t.diagnostic(`screenshot of the first page: ${shot}`);

    // Bob leaves: Alice is told, and the server has one connection left.
    await bob.context().close();
    await alice.locator('#log li.system', { hasText: `#${bobFd} left` }).waitFor();
    assert.equal(server.stats().connections, 1);

    assert.deepEqual(alice.problems, []);
    assert.deepEqual(bob.problems, []);
  });
});

describe('chat demo over plain HTTP', () => {
  let server: Server;
  let url: string;

  before(async () => {
    server = await startChat({ host: '127.0.0.1', port: 0, log: () => {} });
    url = chatUrl('127.0.0.1', server.port);
  });

  after(async () => {
    await server?.stop();
  });

  test('serves the page and its script and stylesheet with their content types', async () => {
    for (const [path, type] of [
      ['', 'text/html'],
      ['chat.js', 'text/javascript'],
      ['chat.css', 'text/css'],
    ] as const) {
      const response = await fetch(url + path, { signal: AbortSignal.timeout(5000) });
      assert.equal(response.status, 200, path);
      assert.match(response.headers.get('content-type') ?? '', new RegExp(`^${type}`), path);
      assert.ok((await response.text()).length > 0, path);
    }
  });

  test('answers 404 for unknown paths, including attempts to leave the public folder', async () => {
    for (const path of ['nope', '..%2F..%2Fpackage.json', 'chat-server.js']) {
      const response = await fetch(url + path, { signal: AbortSignal.timeout(5000) });
      assert.equal(response.status, 404, path);
      await response.body?.cancel();
    }
  });

  test('answers 405 to methods other than GET and HEAD', async () => {
    const response = await fetch(url, { method: 'POST', body: 'x', signal: AbortSignal.timeout(5000) });
    assert.equal(response.status, 405);
    assert.equal(response.headers.get('allow'), 'GET, HEAD');
    await response.body?.cancel();
  });
});
