/**
 * The web console, driven in headless Chromium (Debian `chromium`, through playwright-core):
 * a presentity published and watched over SIP shows up in the page as an operator would look
 * for it. A screenshot is kept in test-artifacts/ for people to look at.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { publish, subscribe, pidf, tuplesOf } from '../support/presence.js';
import { postRpc } from '../../core/rpc/client.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test-artifacts');

const ADMIN = { username: 'operator', password: 'console pass' };

let node: RunningNode;
/** The same console behind rpc_auth = digest: the browser answers the challenge (Playwright httpCredentials). */
let authNode: RunningNode;
let browser: Browser;

before(async () => {
  [node, authNode] = await Promise.all([
    startNode({ web_console: 1 }),
    startNode({ web_console: 1, rpc_auth: 'digest', rpc_auth_users: { [ADMIN.username]: ADMIN.password } }),
  ]);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});

after(async () => {
  await browser?.close();
  await Promise.all([node?.stop(), authNode?.stop()]);
});

test('the console shows a presentity published and watched over SIP: publication, composed state, watcher, live figures', () =>
  showsPresentity(node, 'console.png'));

test('with rpc_auth = digest the console asks for credentials, and with them shows the same', async () => {
  const url = `http://127.0.0.1:${authNode.rpcPort}/console/`;
  const res = await fetch(url);
  assert.equal(res.status, 401, 'no credentials: 401');
  assert.match(res.headers.get('www-authenticate') ?? '', /^Digest realm="presenced"/);
  // A browser without credentials (or with wrong ones) is challenged and does not get in.
  for (const httpCredentials of [undefined, { username: ADMIN.username, password: 'wrong' }]) {
    const context = await browser.newContext(httpCredentials ? { httpCredentials } : {});
    try {
      // Playwright cancels the prompt when it has no credentials; wrong ones end on the 401 page.
      const outcome = await (await context.newPage()).goto(url).then(
        (r) => `status ${r?.status()}`,
        (err: Error) => err.message,
      );
      assert.match(outcome, /^status 401$|ERR_INVALID_AUTH_CREDENTIALS/, `credentials ${JSON.stringify(httpCredentials)}`);
    } finally {
      await context.close();
    }
  }
  await showsPresentity(authNode, 'console-auth.png', ADMIN);
});

async function showsPresentity(node: RunningNode, screenshot: string, credentials?: { username: string; password: string }): Promise<void> {
  const presentity = `sip:console-alice-${Date.now()}@example.com`;
  const publisher = await TestUa.open('udp', node.udpPort);
  const watcher = await TestUa.open('tcp', node.tcpPort);
  try {
    const pub = await publish(publisher, presentity, { body: pidf(presentity, 'phone', 'open', 'at my desk'), expires: 600 });
    assert.equal(pub.status, 200);
    const etag = pub.headers.get('sip-etag')!;
    const { res } = await subscribe(watcher, presentity, { expires: 600 });
    assert.equal(res.status, 200);
    const watcherUri = watcher.aor;

    const context = await browser.newContext(credentials ? { httpCredentials: credentials } : {});
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    await page.goto(`http://127.0.0.1:${node.rpcPort}/console/`);
    // Live figures come from /metrics: our subscription is counted.
    await page
      .locator('[data-figure="subscriptions"]')
      .filter({ hasText: /^[1-9]\d*$/ })
      .waitFor();
    // The presentity is listed; searching opens it.
    await page.fill('input[name="presentity"]', presentity);
    await page.click('form.search button');
    await page.waitForSelector(`[data-presentity="${presentity}"]`);
    const section = page.locator('section.event[data-event="presence"]');
    await section.waitFor();
    assert.equal(await section.locator(`tr[data-etag="${etag}"]`).count(), 1, 'the publication with its entity-tag');
    assert.match(await section.locator(`tr[data-etag="${etag}"] pre`).innerText(), /at my desk/);
    // The composed state (presence.presentity_state): the PIDF a fully authorised watcher gets now.
    const composed = section.locator('pre.composed');
    assert.equal(await composed.getAttribute('data-content-type'), 'application/pidf+xml');
    const shown = await composed.textContent();
    const state = (await postRpc(
      `http://127.0.0.1:${node.rpcPort}/RPC`,
      { method: 'presence.presentity_state', params: [presentity, 'presence'] },
      credentials ? { user: credentials.username, password: credentials.password } : undefined,
    )) as { result: { body: string } };
    assert.equal(shown, state.result.body, 'the page shows the composed body as the RPC returns it');
    assert.deepEqual(tuplesOf(shown!), [{ id: 'phone', basic: 'open' }]);
    assert.match(shown!, /<note>at my desk<\/note>/);
    const row = section.locator(`tr[data-watcher="${watcherUri}"]`);
    assert.equal(await row.count(), 1, 'the watcher');
    assert.equal(await row.locator('.state').innerText(), 'pending', 'no pres-rules: pending, as presence_xml says');
    // The watcher's explain (presence.explain): no pres-rules document, so pending, and why.
    await row.locator('button.explain').click();
    const explained = await row.locator('pre.explained').innerText();
    assert.match(explained, /no pres-rules document/);
    assert.match(explained, /"last_notify"/);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, screenshot), fullPage: true });
    // An unknown presentity says so, an invalid URI shows the RPC's error.
    await page.fill('input[name="presentity"]', 'sip:nobody-here@example.com');
    await page.click('form.search button');
    await page.waitForSelector('text=Nothing published and nobody watching');
    await page.fill('input[name="presentity"]', 'not a uri');
    await page.click('form.search button');
    assert.match(await page.locator('[data-error]').innerText(), /not a presentity URI/);
    assert.deepEqual(problems, [], 'no script errors in the page');
    await context.close();
  } finally {
    await publisher.close();
    await watcher.close();
  }
}

test('the console is off unless configured, and its page may load only its own script', async () => {
  const plain = await startNode();
  try {
    assert.equal((await fetch(`http://127.0.0.1:${plain.rpcPort}/console/`)).status, 404);
  } finally {
    await plain.stop();
  }
  const res = await fetch(`http://127.0.0.1:${node.rpcPort}/console/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
  const js = await fetch(`http://127.0.0.1:${node.rpcPort}/console/app.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type') ?? '', /javascript/);
});
