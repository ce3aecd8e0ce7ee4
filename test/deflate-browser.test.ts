/**
 * permessage-deflate with a real browser: Debian's headless Chromium (through
 * playwright-core, launched as in browser.test.ts) offers the extension by
 * default. A page served by the server opens a WebSocket, sends text and
 * binary messages and checks the echoes; the server's byte counters show
 * both directions were compressed. Chromium comes from apt; the test fails,
 * never downloads: without it the suite is skipped, with the
 * command that installs it (fails under CI).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchChromium } from './chromium.js';
import { CHROMIUM, skipWithout } from './programs.js';
import type { Server, ServerOptions } from '../src/index.js';
import { startServer } from './helpers.js';

const PAGE = '<!doctype html><meta charset="utf-8"><title>deflate</title>';

/** What the page reports back. */
interface PageResult {
  extensions: string;
  echoes: boolean[];
  sizes: number[];
}

/** Runs in the page: opens a socket, sends each message, checks each echo is identical. */
async function roundTrips(url: string): Promise<PageResult> {
  const json = JSON.stringify(Array.from({ length: 2000 }, (_, i) => ({ id: i, name: `user-${i}`, online: i % 3 === 0 })));
  const binary = new Uint8Array(256 * 1024);
  for (let i = 0; i < binary.length; i++) binary[i] = (i >> 4) & 0xff;
  const messages: (string | Uint8Array)[] = ['hi', json, binary, json.slice(0, 5000) + '你好', json];
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const received: (string | ArrayBuffer)[] = [];
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => {
      for (const m of messages) ws.send(m);
    };
    ws.onmessage = (event) => {
      received.push(event.data as string | ArrayBuffer);
      if (received.length === messages.length) resolve();
    };
    ws.onerror = () => reject(new Error('websocket error'));
    ws.onclose = (event) => reject(new Error(`closed ${event.code}`));
  });
  const same = (a: string | Uint8Array, b: string | ArrayBuffer): boolean => {
    if (typeof a === 'string') return a === b;
    if (typeof b === 'string') return false;
    const view = new Uint8Array(b);
    return view.length === a.length && view.every((x, i) => x === a[i]);
  };
  const result = {
    extensions: ws.extensions,
    echoes: messages.map((m, i) => same(m, received[i])),
    sizes: messages.map((m) => (typeof m === 'string' ? new TextEncoder().encode(m).length : m.length)),
  };
  ws.onclose = null;
  ws.close();
  return result;
}

const settings: [string, ServerOptions['perMessageDeflate'], string][] = [
  ['the defaults (no context takeover)', true, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
  ['context takeover', { serverNoContextTakeover: false, clientNoContextTakeover: false }, 'permessage-deflate'],
];

describe('permessage-deflate in headless Chromium', { skip: skipWithout(CHROMIUM) }, () => {
  let browser: Browser | undefined;
  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });

  for (const [label, perMessageDeflate, agreed] of settings) {
    test(`a page sends and receives compressed text and binary messages with ${label}`, async () => {
      const server: Server = await startServer({ perMessageDeflate }, (s) => {
        s.on('request', (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
          res.end(PAGE);
        });
      });
      try {
        const page = await browser!.newPage();
        page.setDefaultTimeout(10_000);
        const problems: string[] = [];
        page.on('pageerror', (error) => problems.push(error.message));
        await page.goto(`http://127.0.0.1:${server.port}/`);
        const result = await page.evaluate(roundTrips, `ws://127.0.0.1:${server.port}/`);
        assert.equal(result.extensions, agreed);
        assert.deepEqual(result.echoes, result.echoes.map(() => true), 'every echo is identical');
        const total = result.sizes.reduce((a, b) => a + b, 0);
        // stats() counts live and closed connections alike.
        const stats = server.stats();
        assert.ok(stats.bytesIn < total / 5, `browser compressed: ${stats.bytesIn} B received for ${total} B of messages`);
        assert.ok(stats.bytesOut < total / 5, `server compressed: ${stats.bytesOut} B sent for ${total} B of messages`);
        assert.deepEqual(problems, []);
        await page.close();
      } finally {
        await server.stop({ timeout: 500 });
      }
    });
  }
});
