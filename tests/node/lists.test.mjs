// Live lists with real JavaScript clients against the demo server: Apollo
// Client's watchQuery + subscribeToMore, run with the README's snippet (its
// documents, filter and merge), keeps the `users` list query's cache equal to
// the server's list, and urql's
// subscriptionExchange receives create / update / delete for the rows that
// enter, change in and leave its filter.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { Client as UrqlClient, fetchExchange, subscriptionExchange } from '@urql/core';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import {
  MessageQueue, REPO_ROOT, WAIT_MS, createUser as createUserOverHttp, graphqlHttp, renameUser, startDemoServer,
  withTimeout,
} from './helpers.mjs';

const ROW = 'id username email';

const USERS_QUERY = `
  query LiveUsers($filters: UserFilter) {
    users(filters: $filters, requestId: "list") { action responseStatus data { ${ROW} } }
  }`;

const USERS_SUBSCRIPTION = `
  subscription LiveUsersChanges($filters: UserFilter) {
    users(filters: $filters, requestId: "live") { action responseStatus pk data { ${ROW} } }
  }`;

const DELETE_USER = `mutation DeleteUser($pk: ID!) { deleteUser(pk: $pk) { id } }`;

/** The ```js block that follows `heading` in the repository's `file`. */
function jsBlockAfter(file, heading) {
  const text = readFileSync(path.join(REPO_ROOT, file), 'utf8');
  const at = text.indexOf(heading);
  assert.notEqual(at, -1, `${file} has no heading "${heading}"`);
  const block = /```js\n([\s\S]*?)```/.exec(text.slice(at));
  assert.ok(block, `${file} has no js block after "${heading}"`);
  return block[1];
}

/**
 * The README's live list snippet (the same code as docs/lists.md's), run as
 * written with a stand-in `client` that records what it is asked: the list
 * query's options (`watch`) and subscribeToMore's (`more`).
 */
function readmeLiveList() {
  const code = jsBlockAfter('README.md', '### Live lists');
  assert.equal(
    code, jsBlockAfter('docs/lists.md', '### Apollo Client: `subscribeToMore`'),
    "README's and docs/lists.md's subscribeToMore snippets differ",
  );
  const asked = {};
  const client = {
    watchQuery(options) {
      asked.watch = options;
      return { subscribeToMore(options) { asked.more = options; return () => {}; } };
    },
  };
  new Function('client', 'gql', code)(client, gql);
  assert.ok(asked.watch && asked.more, 'the snippet calls watchQuery and subscribeToMore');
  return asked;
}

function withoutTypename(value) {
  if (Array.isArray(value)) return value.map(withoutTypename);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).filter(([k]) => k !== '__typename').map(([k, v]) => [k, withoutTypename(v)]),
    );
  }
  return value;
}

function newGraphqlWsClient(url) {
  return createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
}

describe('live lists with JavaScript clients', { timeout: 120_000 }, () => {
  let server;

  before(async () => {
    server = await startDemoServer();
  }, { timeout: 45_000 });

  after(async () => {
    if (server) await server.stop();
  });

  const createUser = (username) => createUserOverHttp(server.httpUrl, username);

  async function serverList(filters) {
    const data = await graphqlHttp(server.httpUrl, USERS_QUERY, { filters });
    return data.users.data;
  }

  test('Apollo Client runs the README\'s subscribeToMore snippet: its merge of create, update and delete keeps the list query\'s cache equal to the server list', async () => {
    const { watch, more } = readmeLiveList();
    const { filters } = watch.variables; // the README's: usernames starting with live-
    const wsClient = newGraphqlWsClient(server.wsUrl);
    const link = ApolloLink.split(
      ({ query }) => {
        const def = getMainDefinition(query);
        return def.kind === 'OperationDefinition' && def.operation === 'subscription';
      },
      new GraphQLWsLink(wsClient),
      new HttpLink({ uri: server.httpUrl }),
    );
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const first = await createUser('live-apollo-first');
    // As useQuery does: observe the list query, then subscribeToMore.
    const watched = client.watchQuery(watch);
    const results = new MessageQueue('apollo list');
    const watching = watched.subscribe(results.sink());
    const events = new MessageQueue('apollo events');
    const unsubscribe = watched.subscribeToMore({
      ...more,
      updateQuery(previous, options) {
        events.push(withoutTypename(options.subscriptionData.data.users));
        return more.updateQuery(previous, options); // the README's merge
      },
    });
    try {
      // The list is cached (the README's merge skips events until it is) ...
      let listed = await results.next();
      while (!listed.data?.users) listed = await results.next();
      assert.deepEqual(withoutTypename(listed.data.users.data), [first]);
      // ... and the subscription started.
      assert.equal((await events.next()).action, 'subscribe_list');
      const second = await createUser('live-apollo-second');
      await renameUser(server.httpUrl, first.id, 'live-apollo-renamed');
      await createUser('dead-apollo-outside');
      await renameUser(server.httpUrl, second.id, 'dead-apollo-left');
      const third = await createUser('live-apollo-third');
      await graphqlHttp(server.httpUrl, DELETE_USER, { pk: third.id });
      const expected = await serverList(filters);
      assert.deepEqual(expected, [{ ...first, username: 'live-apollo-renamed' }]);
      const deadline = Date.now() + WAIT_MS;
      for (;;) {
        const current = withoutTypename(watched.getCurrentResult().data?.users?.data);
        if (JSON.stringify(current) === JSON.stringify(expected)) break;
        assert.ok(Date.now() < deadline, `the cache holds ${JSON.stringify(current)}, the server ${JSON.stringify(expected)}; events: ${JSON.stringify(events.received)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      // Nothing about the row that never matched reached the client.
      assert.ok(events.received.every((e) => !JSON.stringify(e).includes('outside')));
    } finally {
      unsubscribe();
      watching.unsubscribe();
      client.stop();
      await withTimeout(wsClient.dispose(), 'apollo graphql-ws dispose');
    }
  });

  test('urql receives subscribe_list, then create, update and a delete without data when the row leaves the filter', async () => {
    const filters = { username: { startsWith: 'live-urql-' } };
    const wsClient = newGraphqlWsClient(server.wsUrl);
    const client = new UrqlClient({
      url: server.httpUrl,
      preferGetMethod: false,
      requestPolicy: 'network-only',
      exchanges: [
        fetchExchange,
        subscriptionExchange({
          forwardSubscription(request) {
            const input = { ...request, query: request.query || '' };
            return { subscribe: (sink) => ({ unsubscribe: wsClient.subscribe(input, sink) }) };
          },
        }),
      ],
    });
    const queue = new MessageQueue('urql list');
    const { unsubscribe } = client
      .subscription(USERS_SUBSCRIPTION, { filters })
      .subscribe((result) => queue.push(withoutTypename(result.data?.users ?? result.error)));
    const envelope = (action, responseStatus, pk, data) => ({
      action, responseStatus, pk: pk && String(pk), data,
    });
    try {
      assert.deepEqual(await queue.next(), envelope('subscribe_list', 201, null, null));
      const user = await createUser('live-urql-1');
      assert.deepEqual(await queue.next(), envelope('create', 201, user.id, user));
      await renameUser(server.httpUrl, user.id, 'live-urql-one');
      assert.deepEqual(
        await queue.next(), envelope('update', 200, user.id, { ...user, username: 'live-urql-one' }),
      );
      await renameUser(server.httpUrl, user.id, 'gone-urql');
      assert.deepEqual(await queue.next(), envelope('delete', 204, user.id, null));
    } finally {
      unsubscribe();
      await withTimeout(wsClient.dispose(), 'urql graphql-ws dispose');
    }
  });
});
