// The live lists in GraphiQL, in Debian's Chromium driven by playwright-core
// (the page's helpers: graphiql_page.mjs). GraphiQL runs the `users(filters:
// ...)` list Query and shows the rows, then the list Subscription and shows
// subscribe_list and each create / update / delete as mutations over HTTP
// happen; logged in (the login mutation's token in the Headers tab), it runs
// the owner-only `notes` list and shows a note
// given to the viewer (create) and given away (delete without data).
// Assertions are on what the result pane shows; the frames the page's
// websocket received prove that nothing else arrived.
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import {
  createUser, graphqlHttp, renameUser, startDemoServer,
} from './helpers.mjs';
import {
  CHROMIUM, CHROMIUM_ARGS, SKIP, openPage, typeDocument, typeHeaders, waitForData,
} from './graphiql_page.mjs';

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

/** The execute button's label while nothing runs. */
const EXECUTE = 'Execute query (Ctrl-Enter)';

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

const GRAPHIQL_LOGIN = 'mutation { login(username: "test 2", password: "demo") }';
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

describe('live lists in GraphiQL in Chromium', { timeout: 120_000 }, () => {
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

  test('GraphiQL: the owner-only notes Subscription answers an anonymous page 401; logged in as "test 2" (the login mutation\'s token in the Headers tab) it shows a note given to them as create, given away as a delete without data, and nothing of its owner\'s edits before', { skip: SKIP }, async (t) => {
    const { page, problems, consoleLines } = await openPage(browser);
    const frames = recordListFrames(page, 'notes');
    const screenshot = path.join(tmpdir(), `gql-observer-graphiql-notes-${process.pid}.png`);
    try {
      const [asTest1, asTest2] = [await bearer(server, 'test 1'), await bearer(server, 'test 2')];
      const pkOf = async (name) => (await graphqlHttp(server.httpUrl, USER_PK, { name })).users.data[0].id;
      const [test1, test2] = [await pkOf('test 1'), await pkOf('test 2')];
      const note = (await graphqlHttp(server.httpUrl, CREATE_MY_NOTE, { title: 'live-plan' }, asTest1)).createNote;

      const envelope = (action, responseStatus, pk, data, errors = []) => ({
        data: { notes: { action, errors, responseStatus, requestId: 'graphiql-notes', pk, data } },
      });
      const idle = page.locator(`button.graphiql-execute-button[aria-label="${EXECUTE}"]`);
      await page.goto(server.httpUrl, { waitUntil: 'load', timeout: 20_000 });

      // Anonymous: 401, and the subscription ends (GraphiQL offers to run again).
      await typeDocument(page, NOTES_SUBSCRIPTION, 'subscription');
      await page.locator('button.graphiql-execute-button').click();
      assert.deepEqual(
        await waitForData(page, 'notes', { action: 'subscribe_list', responseStatus: 401 }),
        envelope('subscribe_list', 401, null, null, ['Authentication required.']),
      );
      await idle.waitFor({ state: 'visible' });

      // As a person would in the demo: log in with the mutation, put its token
      // in the Headers tab (sent as connection_init's payload), subscribe.
      await typeDocument(page, GRAPHIQL_LOGIN, 'mutation');
      await page.locator('button.graphiql-execute-button').click();
      const token = (await waitForData(page, 'login', {})).data.login;
      assert.equal(typeof token, 'string');
      await typeHeaders(page, { Authorization: `Bearer ${token}` });
      await typeDocument(page, NOTES_SUBSCRIPTION, 'subscription');
      await page.locator('button.graphiql-execute-button').click();
      assert.deepEqual( // 201: the token counted
        await waitForData(page, 'notes', { action: 'subscribe_list', responseStatus: 201 }),
        envelope('subscribe_list', 201, null, null),
      );

      // test 1 edits their own note (not test 2's business), then gives it to test 2.
      await graphqlHttp(server.httpUrl, UPDATE_MY_NOTE, { pk: note.id, title: 'live-plan-b' }, asTest1);
      await graphqlHttp(server.httpUrl, TRANSFER_NOTE, { pk: note.id, to: test2 }, asTest1);
      assert.deepEqual(
        await waitForData(page, 'notes', { action: 'create', pk: note.id }),
        envelope('create', 201, note.id, { ...note, title: 'live-plan-b' }),
      );
      // test 2 gives it back: it leaves their list, with no data.
      await graphqlHttp(server.httpUrl, TRANSFER_NOTE, { pk: note.id, to: test1 }, asTest2);
      assert.deepEqual(
        await waitForData(page, 'notes', { action: 'delete', pk: note.id }),
        envelope('delete', 204, note.id, null),
      );
      // Nothing about the note while it was test 1's: the create was the next frame.
      assert.deepEqual(
        frames.map((f) => [f.action, f.responseStatus, f.pk]),
        [['subscribe_list', 401, null], ['subscribe_list', 201, null], ['create', 201, note.id], ['delete', 204, note.id]],
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
