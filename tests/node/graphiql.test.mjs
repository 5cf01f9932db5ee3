// GraphiQL in a real browser: Debian's Chromium, driven by playwright-core,
// opens the demo server's GraphiQL page, runs a live subscription over the
// websocket and shows the update that a mutation over HTTP triggers; runs the
// live list (`users(filters: ...)`) Query and Subscription and shows the
// rows, then each create / update / delete as the mutations happen; signed
// in, runs the owner-only `notes` list and shows a note given to the viewer
// (create) and given away (delete without data).
// (The page helpers are in graphiql_page.mjs.)
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
  REPO_ROOT, WAIT_MS, createUser, graphqlHttp, loginSession, pythonExecutable, renameUser,
  startDemoServer,
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

// The README's live list, typed as a person would: the filter inline, no variables.
const LIST_FILTER = '{username: {startsWith: "live-"}}';
const LIST_QUERY = `query LiveUsers {
  users(filters: ${LIST_FILTER}, requestId: "graphiql-list") {
    action
    errors
    responseStatus
    requestId
    data { id username email }
  }
}`;
const LIST_SUBSCRIPTION = `subscription LiveUsersChanges {
  users(filters: ${LIST_FILTER}, requestId: "graphiql-live") {
    action
    errors
    responseStatus
    requestId
    pk
    data { id username email }
  }
}`;

// The owner-only notes list: each viewer's list holds their own notes only.
const NOTES_SUBSCRIPTION = `subscription MyLiveNotes {
  notes(filters: {title: {startsWith: "live-"}}, requestId: "graphiql-notes") {
    action
    errors
    responseStatus
    requestId
    pk
    data { id title body }
  }
}`;

const LOGIN = 'mutation Login($username: String!, $password: String!) { login(username: $username, password: $password) }';
const NOTE_FIELDS = 'id title body';
const CREATE_MY_NOTE = `mutation CreateNote($title: String!) { createNote(title: $title) { ${NOTE_FIELDS} } }`;
const UPDATE_MY_NOTE = `mutation UpdateNote($pk: ID!, $title: String) { updateNote(pk: $pk, title: $title) { ${NOTE_FIELDS} } }`;
const TRANSFER_NOTE = `mutation TransferNote($pk: ID!, $to: ID!) { transferNote(pk: $pk, newOwner: $to) { ${NOTE_FIELDS} } }`;
const USER_PK = 'query UserPk($name: String!) { users(filters: {username: {exact: $name}}) { data { id } } }';

/** A bearer token for a demo user (the seed's users' password is "demo"). */
async function bearer(server, username) {
  const data = await graphqlHttp(server.httpUrl, LOGIN, { username, password: 'demo' });
  return { authorization: `Bearer ${data.login}` };
}

/**
 * The `field` list envelopes the page's websockets received, in order
 * (graphql-transport-ws `next` messages), to prove what did not arrive.
 */
function recordListFrames(page, field = 'users') {
  const frames = [];
  page.on('websocket', (ws) => ws.on('framereceived', ({ payload }) => {
    let message;
    try {
      message = JSON.parse(String(payload));
    } catch {
      return;
    }
    const envelope = message.type === 'next' ? message.payload?.data?.[field] : undefined;
    if (envelope) frames.push(envelope);
  }));
  return frames;
}

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

  test('GraphiQL runs the users list Query and shows its rows, then the list Subscription shows subscribe_list, create, update and a delete without data as a live- user is created, renamed and renamed out of the filter', { skip: SKIP }, async (t) => {
    const { page, problems, consoleLines, websockets } = await openPage(browser);
    const frames = recordListFrames(page);
    const screenshot = path.join(tmpdir(), `gql-observer-graphiql-lists-${process.pid}.png`);
    const row = (user, username = user.username) => ({ id: user.id, username, email: user.email });
    try {
      const ann = await createUser(server.httpUrl, 'live-graphiql-ann');
      await createUser(server.httpUrl, 'dead-graphiql-bob'); // outside the filter
      const cid = await createUser(server.httpUrl, 'live-graphiql-cid');
      await page.goto(server.httpUrl, { waitUntil: 'load', timeout: 20_000 });

      // (1) The list Query: the page shows the matching rows, ordered by pk.
      await typeDocument(page, LIST_QUERY, 'query');
      await page.locator('button.graphiql-execute-button').click();
      const listed = await waitForData(page, 'users', { action: 'list', requestId: 'graphiql-list' });
      assert.deepEqual(listed, {
        data: {
          users: {
            action: 'list', errors: [], responseStatus: 200, requestId: 'graphiql-list', data: [row(ann), row(cid)],
          },
        },
      });

      // (2) The list Subscription, over the websocket.
      await typeDocument(page, LIST_SUBSCRIPTION, 'subscription');
      await page.locator('button.graphiql-execute-button').click();
      const envelope = (action, responseStatus, pk, data) => ({
        data: { users: { action, errors: [], responseStatus, requestId: 'graphiql-live', pk, data } },
      });
      assert.deepEqual(
        await waitForData(page, 'users', { action: 'subscribe_list' }),
        envelope('subscribe_list', 201, null, null),
      );
      assert.ok(websockets.includes(server.wsUrl), `expected a websocket to ${server.wsUrl}: ${JSON.stringify(websockets)}`);

      // A user outside the filter, then one inside: the page shows the second's create.
      await createUser(server.httpUrl, 'dead-graphiql-outside');
      const dan = await createUser(server.httpUrl, 'live-graphiql-dan');
      assert.deepEqual(
        await waitForData(page, 'users', { action: 'create', pk: dan.id }),
        envelope('create', 201, dan.id, row(dan)),
      );
      await renameUser(server.httpUrl, dan.id, 'live-graphiql-daniel');
      assert.deepEqual(
        await waitForData(page, 'users', { action: 'update', pk: dan.id }),
        envelope('update', 200, dan.id, row(dan, 'live-graphiql-daniel')),
      );
      await renameUser(server.httpUrl, dan.id, 'gone-graphiql-daniel');
      assert.deepEqual(
        await waitForData(page, 'users', { action: 'delete', pk: dan.id }),
        envelope('delete', 204, dan.id, null),
      );

      // The page received exactly those four: nothing about the user outside
      // the filter (the create that followed it was the next frame).
      assert.deepEqual(
        frames.map((f) => [f.action, f.pk]),
        [['subscribe_list', null], ['create', dan.id], ['update', dan.id], ['delete', dan.id]],
      );
      assert.deepEqual(problems, []);
    } catch (err) {
      err.message += `\nframes: ${JSON.stringify(frames)}\nproblems: ${JSON.stringify(problems)}\nbrowser console:\n${consoleLines.join('\n')}`;
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
  test('GraphiQL signed in as "test 2" runs the owner-only notes Subscription: a note given to them shows as create, given away as a delete without data, and its owner\'s edits before never show', { skip: SKIP }, async (t) => {
    const { page, problems, consoleLines } = await openPage(browser);
    const frames = recordListFrames(page, 'notes');
    const screenshot = path.join(tmpdir(), `gql-observer-graphiql-notes-${process.pid}.png`);
    try {
      const [asTest3, asTest2] = [await bearer(server, 'test 3'), await bearer(server, 'test 2')];
      const pkOf = async (name) => (await graphqlHttp(server.httpUrl, USER_PK, { name })).users.data[0].id;
      const [test3, test2] = [await pkOf('test 3'), await pkOf('test 2')];
      const note = (await graphqlHttp(server.httpUrl, CREATE_MY_NOTE, { title: 'live-plan' }, asTest3)).createNote;

      const sessionKey = await loginSession(server, 'test 2');
      await page.context().addCookies([{ name: 'sessionid', value: sessionKey, domain: '127.0.0.1', path: '/' }]);
      await page.goto(server.httpUrl, { waitUntil: 'load', timeout: 20_000 });
      await typeDocument(page, NOTES_SUBSCRIPTION, 'subscription');
      await page.locator('button.graphiql-execute-button').click();
      const envelope = (action, responseStatus, pk, data) => ({
        data: { notes: { action, errors: [], responseStatus, requestId: 'graphiql-notes', pk, data } },
      });
      assert.deepEqual(
        await waitForData(page, 'notes', { action: 'subscribe_list' }),
        envelope('subscribe_list', 201, null, null),
      );

      // The first test renamed user 1: "test 3" is the other owner. test 3 edits
      // their own note (not test 2's business), then gives it to test 2.
      await graphqlHttp(server.httpUrl, UPDATE_MY_NOTE, { pk: note.id, title: 'live-plan-b' }, asTest3);
      await graphqlHttp(server.httpUrl, TRANSFER_NOTE, { pk: note.id, to: test2 }, asTest3);
      assert.deepEqual(
        await waitForData(page, 'notes', { action: 'create', pk: note.id }),
        envelope('create', 201, note.id, { ...note, title: 'live-plan-b' }),
      );
      // test 2 gives it back: it leaves their list, with no data.
      await graphqlHttp(server.httpUrl, TRANSFER_NOTE, { pk: note.id, to: test3 }, asTest2);
      assert.deepEqual(
        await waitForData(page, 'notes', { action: 'delete', pk: note.id }),
        envelope('delete', 204, note.id, null),
      );
      // Nothing about the note while it was test 3's: the create was the next frame.
      assert.deepEqual(
        frames.map((f) => [f.action, f.pk]),
        [['subscribe_list', null], ['create', note.id], ['delete', note.id]],
      );
      assert.deepEqual(problems, []);
    } catch (err) {
      err.message += `\nframes: ${JSON.stringify(frames)}\nproblems: ${JSON.stringify(problems)}\nbrowser console:\n${consoleLines.join('\n')}`;
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
