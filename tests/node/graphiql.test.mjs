// GraphiQL in a real browser: Debian's Chromium, driven by playwright-core,
// opens the demo server's GraphiQL page, runs a live subscription over the
// websocket and shows the update that a mutation over HTTP triggers.
// (The page helpers are in graphiql_page.mjs; the live lists are in
// graphiql_lists.test.mjs.)
//
// The page loads its assets from unpkg.com, which this machine cannot reach;
// every such request is answered from node_modules, where package.json pins the
// exact versions that strawberry's graphiql.html asks for (the page's
// subresource-integrity hashes then prove the files are the same).
//
// With no internet at all: the demo serves the assets itself
// (GRAPHIQL_ASSETS_DIR, filled by `manage.py gql_observer_graphiql_assets`)
// and Chromium can resolve no host but 127.0.0.1.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import {
  REPO_ROOT, WAIT_MS, loginSession, pythonExecutable, renameUser, startDemoServer,
} from './helpers.mjs';
import {
  CHROMIUM, CHROMIUM_ARGS, SKIP, openPage, typeDocument, waitForData,
} from './graphiql_page.mjs';

const REQUEST_ID = 1700000000000;
const SUBSCRIPTION = `subscription WatchUser {
  user(pk: 1, requestId: ${REQUEST_ID}) {
    action
    errors
    responseStatus
    requestId
    data { id username email }
  }
}`;

// createNote needs a signed-in user: an answer with data proves the session counted.
const CREATE_NOTE = 'mutation { createNote(title: "written in GraphiQL") { title } }';

describe('GraphiQL in Chromium', { timeout: 120_000 }, () => {
  let server;
  let browser;

  before(async () => {
    if (SKIP) return;
    server = await startDemoServer();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
  }, { timeout: 75_000 });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  test('GraphiQL runs a user subscription, shows subscribe_instance/201, then shows the new username after an updateUser mutation', { skip: SKIP }, async (t) => {
    const { page, problems, consoleLines, websockets, servedAssets } = await openPage(browser);

    const screenshot = path.join(tmpdir(), `gql-observer-graphiql-${process.pid}.png`);
    try {
      await page.goto(server.httpUrl, { waitUntil: 'load', timeout: 20_000 });
      const editor = page.locator('.graphiql-query-editor .CodeMirror');
      await editor.waitFor({ state: 'visible' });
      assert.equal(servedAssets.length, 7, `expected 7 unpkg assets, served ${JSON.stringify(servedAssets)}`);

      // Type the subscription into the query editor, replacing the example.
      await typeDocument(page, SUBSCRIPTION, 'subscription');
      await page.locator('button.graphiql-execute-button').click();

      const first = await waitForData(page, 'user', { action: 'subscribe_instance' });
      assert.deepEqual(first, {
        data: {
          user: { action: 'subscribe_instance', errors: [], responseStatus: 201, requestId: REQUEST_ID, data: null },
        },
      });
      assert.ok(
        websockets.includes(server.wsUrl),
        `expected a websocket to ${server.wsUrl}, saw ${JSON.stringify(websockets)}`,
      );

      const username = 'graphiql_renamed_1';
      await renameUser(server.httpUrl, 1, username);
      const updated = await waitForData(page, 'user', { action: 'update' });
      assert.deepEqual(updated, {
        data: {
          user: {
            action: 'update',
            errors: [],
            responseStatus: 200,
            requestId: REQUEST_ID,
            data: { id: '1', username, email: '1@example.com' },
          },
        },
      });
      assert.deepEqual(problems, []);
    } catch (err) {
      err.message += `\nproblems: ${JSON.stringify(problems)}\nbrowser console:\n${consoleLines.join('\n')}`;
      throw err;
    } finally {
      await page.screenshot({ path: screenshot }).catch(() => {});
      t.diagnostic(`screenshot: ${screenshot}`);
      await page.close();
    }
  });

  test('GraphiQL runs a mutation as the session\'s user: its page sets the csrftoken cookie, and GraphiQL sends it as X-CSRFToken', { skip: SKIP }, async (t) => {
    const { page, problems, consoleLines } = await openPage(browser);
    const sessionKey = await loginSession(server, 'test 2');
    await page.context().addCookies([{ name: 'sessionid', value: sessionKey, domain: '127.0.0.1', path: '/' }]);
    const posts = [];
    page.on('request', (request) => {
      if (request.method() === 'POST' && request.url() === server.httpUrl) posts.push(request.headers());
    });
    const screenshot = path.join(tmpdir(), `gql-observer-graphiql-csrf-${process.pid}.png`);
    try {
      await page.goto(server.httpUrl, { waitUntil: 'load', timeout: 20_000 });
      const csrf = (await page.context().cookies(server.httpUrl)).find((c) => c.name === 'csrftoken');
      assert.ok(csrf, 'the GraphiQL page sets the csrftoken cookie');
      await typeDocument(page, CREATE_NOTE, 'mutation');
      await page.locator('button.graphiql-execute-button').click();
      const created = await waitForData(page, 'createNote', { title: 'written in GraphiQL' });
      assert.deepEqual(created, { data: { createNote: { title: 'written in GraphiQL' } } });
      const mutation = posts.find((headers) => headers['x-csrftoken']);
      assert.ok(mutation, `GraphiQL sent no X-CSRFToken: ${JSON.stringify(posts)}`);
      assert.equal(mutation['x-csrftoken'], csrf.value);
      assert.deepEqual(problems, []);
    } catch (err) {
      err.message += `\nproblems: ${JSON.stringify(problems)}\nbrowser console:\n${consoleLines.join('\n')}`;
      throw err;
    } finally {
      await page.screenshot({ path: screenshot }).catch(() => {});
      t.diagnostic(`screenshot: ${screenshot}`);
      await page.close();
    }
  });
});

/**
 * GraphiQL's assets in a directory: $GQL_OBSERVER_GRAPHIQL_ASSETS_DIR (pytest
 * fetches them once per session), else fetched here by the demo's
 * `gql_observer_graphiql_assets` command from the npm registry into a temporary
 * directory, which `cleanup()` removes.
 */
function graphiqlAssets() {
  const given = process.env.GQL_OBSERVER_GRAPHIQL_ASSETS_DIR;
  if (given) return { dir: given, cleanup() {} };
  const dir = mkdtempSync(path.join(tmpdir(), 'gql-observer-graphiql-assets-'));
  const env = { ...process.env };
  delete env.DJANGO_SETTINGS_MODULE;
  const run = spawnSync(
    pythonExecutable(),
    ['-m', 'schema_examples', 'gql_observer_graphiql_assets', '--dir', dir],
    { cwd: REPO_ROOT, env, encoding: 'utf8', timeout: 120_000 },
  );
  if (run.status !== 0) throw new Error(`could not fetch GraphiQL's assets: ${run.stderr}`);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

describe('GraphiQL in Chromium with no internet', { timeout: 120_000 }, () => {
  let server;
  let browser;
  let assets;

  before(async () => {
    if (SKIP) return;
    assets = graphiqlAssets();
    server = await startDemoServer({ env: { GRAPHIQL_ASSETS_DIR: assets.dir } });
    // Every host name but 127.0.0.1 resolves to nothing: the CDN cannot be reached
    // even by a request the page's route below did not see.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [...CHROMIUM_ARGS, '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'],
      timeout: 30_000,
    });
  }, { timeout: 150_000 });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
    if (assets) assets.cleanup();
  });

  test('with GRAPHIQL_ASSETS_DIR, GraphiQL loads every asset from its own server, runs the seed\'s subscription and shows the update', { skip: SKIP }, async (t) => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(WAIT_MS);
    const problems = [];
    const consoleLines = [];
    const loaded = [];
    page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('requestfailed', (request) => problems.push(`failed: ${request.url()}`));
    page.on('response', (response) => loaded.push([response.url(), response.status()]));
    // Nothing leaves the machine: a request to any other host (an IP address too)
    // is refused and counted as a problem.
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('data:') || new URL(url).hostname === '127.0.0.1') return route.continue();
      problems.push(`blocked request to ${url}`);
      return route.abort('internetdisconnected');
    });
    const screenshot = path.join(tmpdir(), `gql-observer-graphiql-offline-${process.pid}.png`);
    try {
      await page.goto(server.httpUrl, { waitUntil: 'load', timeout: 20_000 });
      await page.locator('.graphiql-query-editor .CodeMirror').waitFor({ state: 'visible' });
      const assetsBase = `http://127.0.0.1:${server.port}/graphql/graphiql/`;
      const served = loaded.filter(([url]) => url.startsWith(assetsBase));
      assert.equal(served.length, 7, `expected 7 assets from ${assetsBase}: ${JSON.stringify(loaded)}`);
      assert.ok(served.every(([, status]) => status === 200), JSON.stringify(served));

      await typeDocument(page, SUBSCRIPTION, 'subscription');
      await page.locator('button.graphiql-execute-button').click();
      const first = await waitForData(page, 'user', { action: 'subscribe_instance' });
      assert.equal(first.data.user.responseStatus, 201);

      const username = 'offline_renamed_1';
      await renameUser(server.httpUrl, 1, username);
      const updated = await waitForData(page, 'user', { action: 'update' });
      assert.deepEqual(updated.data.user.data, { id: '1', username, email: '1@example.com' });
      assert.deepEqual(problems, []);
    } catch (err) {
      err.message += `\nproblems: ${JSON.stringify(problems)}\nbrowser console:\n${consoleLines.join('\n')}`;
      throw err;
    } finally {
      await page.screenshot({ path: screenshot }).catch(() => {});
      t.diagnostic(`screenshot: ${screenshot}`);
      await page.close();
    }
  });
});
