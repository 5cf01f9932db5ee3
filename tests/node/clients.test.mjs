// End-to-end tests of the demo server with real JavaScript GraphQL clients:
// graphql-ws, Apollo Client (GraphQLWsLink + HttpLink) and urql
// (subscriptionExchange forwarding to graphql-ws, fetchExchange over HTTP).
//
// One demo server (fresh SQLite database, free port) serves the whole file.
// Tests stay independent: only one test ever changes seeded user 1; users 2
// and 3 are only read; every other test creates and owns its user. (Seeded
// usernames such as "test 1" contain a space, which the mutations' username
// validation rejects, so a renamed seeded user cannot be put back.)
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { Client as UrqlClient, fetchExchange, subscriptionExchange } from '@urql/core';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import {
  MessageQueue, UPDATE_USER, graphqlHttp, renameUser, startDemoServer, withTimeout,
} from './helpers.mjs';

// Bigger than a 32-bit int: it must come back exactly, not as a GraphQL Int.
const REQUEST_ID = 1700000000000;

const ENVELOPE = 'action errors responseStatus requestId data { id username email }';

const USER_SUBSCRIPTION = `
  subscription WatchUser($pk: ID!, $requestId: JSON) {
    user(pk: $pk, requestId: $requestId) { ${ENVELOPE} }
  }`;

const USER_QUERY = `
  query GetUser($pk: ID!, $requestId: JSON) {
    user(pk: $pk, requestId: $requestId) { ${ENVELOPE} }
  }`;

const seeded = (pk) => ({ id: String(pk), username: `test ${pk}`, email: `${pk}@example.com` });

const CREATE_USER = `
  mutation CreateUser($username: String!, $email: String!, $password: String!) {
    createUser(username: $username, email: $email, password: $password) { id username email }
  }`;

/** Drop the `__typename` fields that Apollo and urql add to every selection. */
function withoutTypename(value) {
  if (Array.isArray(value)) return value.map(withoutTypename);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).filter(([k]) => k !== '__typename').map(([k, v]) => [k, withoutTypename(v)]),
    );
  }
  return value;
}

/** The `user` envelope of one execution result, failing on GraphQL errors. */
function userEnvelope(result, label) {
  const errors = result.errors || result.error;
  assert.ok(!errors, `${label}: unexpected errors: ${errors && (errors.message || JSON.stringify(errors))}`);
  assert.ok(result.data && result.data.user, `${label}: no data.user in ${JSON.stringify(result)}`);
  return withoutTypename(result.data.user);
}

function subscribeInstance(requestId) {
  return { action: 'subscribe_instance', errors: [], responseStatus: 201, requestId, data: null };
}

function update(requestId, user) {
  return { action: 'update', errors: [], responseStatus: 200, requestId, data: user };
}

function retrieve(requestId, user) {
  return { action: 'retrieve', errors: [], responseStatus: 200, requestId, data: user };
}

function newGraphqlWsClient(url) {
  return createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
}

/**
 * The shared scenario: the first message is subscribe_instance/201; after an
 * updateUser mutation over HTTP the next one is update/200 with the new
 * username and the same requestId. `queue` receives the client's results.
 */
async function expectSubscribeThenUpdate(server, queue, user, label) {
  assert.deepEqual(userEnvelope(await queue.next(), label), subscribeInstance(REQUEST_ID));
  const username = `${label}_renamed_${user.id}`;
  const updated = await renameUser(server.httpUrl, user.id, username);
  assert.equal(updated.username, username);
  assert.deepEqual(
    userEnvelope(await queue.next(), label),
    update(REQUEST_ID, { ...user, username }),
  );
}

describe('JavaScript clients against the demo server', { timeout: 120_000 }, () => {
  let server;

  before(async () => {
    server = await startDemoServer();
  }, { timeout: 45_000 });

  after(async () => {
    if (server) await server.stop();
  });

  /** Create a user over HTTP that only the calling test uses. */
  async function createOwnUser(name) {
    const data = await graphqlHttp(server.httpUrl, CREATE_USER, {
      username: name, email: `${name}@example.com`, password: 'correct-horse-battery-staple',
    });
    assert.equal(data.createUser.username, name);
    return data.createUser;
  }

  test('a plain HTTP POST query returns retrieve/200 with seeded user 2 and echoes the requestId', async () => {
    const data = await graphqlHttp(server.httpUrl, USER_QUERY, { pk: '2', requestId: REQUEST_ID });
    assert.deepEqual(data.user, retrieve(REQUEST_ID, seeded(2)));
  });

  test('graphql-ws createClient subscribes to user 1, gets subscribe_instance/201, then update/200 with the new username after updateUser', async () => {
    const client = newGraphqlWsClient(server.wsUrl);
    const queue = new MessageQueue('graphql-ws');
    // The literal form from the brief: a requestId literal larger than Int32.
    const unsubscribe = client.subscribe(
      { query: `subscription { user(pk: 1, requestId: ${REQUEST_ID}) { ${ENVELOPE} } }` },
      queue.sink(),
    );
    try {
      // The only test that changes a seeded user.
      await expectSubscribeThenUpdate(server, queue, seeded(1), 'graphql_ws');
    } finally {
      unsubscribe();
      await withTimeout(client.dispose(), 'graphql-ws dispose');
    }
  });

  test('graphql-ws runs a query for seeded user 3 over the websocket and gets retrieve/200 with the requestId echoed', async () => {
    const client = newGraphqlWsClient(server.wsUrl);
    const requestId = { client: 'graphql-ws', n: [1, 2.5, null, true], s: 'é✓' };
    try {
      const queue = new MessageQueue('graphql-ws query');
      client.subscribe({ query: USER_QUERY, variables: { pk: '3', requestId } }, queue.sink());
      assert.deepEqual(userEnvelope(await queue.next(), 'graphql-ws query'), retrieve(requestId, seeded(3)));
    } finally {
      await withTimeout(client.dispose(), 'graphql-ws dispose');
    }
  });

  test('graphql-ws receives delete/204 and then completion when the watched user is deleted', async () => {
    const created = await createOwnUser('to_be_deleted');
    const client = newGraphqlWsClient(server.wsUrl);
    const queue = new MessageQueue('graphql-ws delete');
    const unsubscribe = client.subscribe(
      { query: USER_SUBSCRIPTION, variables: { pk: created.id, requestId: 'delete-me' } },
      queue.sink(),
    );
    try {
      assert.deepEqual(userEnvelope(await queue.next(), 'graphql-ws delete'), subscribeInstance('delete-me'));
      await graphqlHttp(server.httpUrl, 'mutation Del($pk: ID!) { deleteUser(pk: $pk) { id } }', { pk: created.id });
      const deleted = userEnvelope(await queue.next(), 'graphql-ws delete');
      assert.equal(deleted.action, 'delete');
      assert.equal(deleted.responseStatus, 204);
      assert.equal(deleted.requestId, 'delete-me');
      await assert.rejects(queue.next(), /subscription completed/);
      assert.deepEqual(queue.ended, { complete: true });
    } finally {
      unsubscribe();
      await withTimeout(client.dispose(), 'graphql-ws dispose');
    }
  });

  describe('Apollo Client', () => {
    function newApolloClient() {
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
      return {
        client,
        async close() {
          client.stop();
          await withTimeout(wsClient.dispose(), 'apollo graphql-ws dispose');
        },
      };
    }

    test('Apollo Client with GraphQLWsLink subscribes to its own user, gets subscribe_instance/201, then update/200 with the new username after updateUser', async () => {
      const user = await createOwnUser('apollo_watch');
      const { client, close } = newApolloClient();
      const queue = new MessageQueue('apollo');
      const subscription = client
        .subscribe({ query: gql(USER_SUBSCRIPTION), variables: { pk: user.id, requestId: REQUEST_ID } })
        .subscribe(queue.sink());
      try {
        await expectSubscribeThenUpdate(server, queue, user, 'apollo');
      } finally {
        subscription.unsubscribe();
        await close();
      }
    });

    test('Apollo Client queries seeded user 2 over HttpLink and gets retrieve/200 with the requestId echoed', async () => {
      const { client, close } = newApolloClient();
      try {
        const result = await withTimeout(
          client.query({
            query: gql(USER_QUERY),
            variables: { pk: '2', requestId: 'apollo-query' },
            fetchPolicy: 'network-only',
          }),
          'apollo query',
        );
        assert.deepEqual(userEnvelope(result, 'apollo query'), retrieve('apollo-query', seeded(2)));
      } finally {
        await close();
      }
    });
  });

  describe('urql', () => {
    function newUrqlClient() {
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
              return {
                subscribe(sink) {
                  const unsubscribe = wsClient.subscribe(input, sink);
                  return { unsubscribe };
                },
              };
            },
          }),
        ],
      });
      return { client, close: () => withTimeout(wsClient.dispose(), 'urql graphql-ws dispose') };
    }

    test('urql with subscriptionExchange subscribes to its own user, gets subscribe_instance/201, then update/200 with the new username after updateUser', async () => {
      const user = await createOwnUser('urql_watch');
      const { client, close } = newUrqlClient();
      const queue = new MessageQueue('urql');
      const { unsubscribe } = client
        .subscription(USER_SUBSCRIPTION, { pk: user.id, requestId: REQUEST_ID })
        .subscribe((result) => queue.push({ data: result.data, error: result.error }));
      try {
        await expectSubscribeThenUpdate(server, queue, user, 'urql');
      } finally {
        unsubscribe();
        await close();
      }
    });

    test('urql queries seeded user 3 over HTTP with fetchExchange and gets retrieve/200 with the requestId echoed', async () => {
      const { client, close } = newUrqlClient();
      try {
        const result = await withTimeout(
          client.query(USER_QUERY, { pk: '3', requestId: REQUEST_ID + 1 }).toPromise(),
          'urql query',
        );
        assert.deepEqual(userEnvelope(result, 'urql query'), retrieve(REQUEST_ID + 1, seeded(3)));
      } finally {
        await close();
      }
    });
  });

  test('graphql-ws subscribes to its own user and sees the update of a mutation sent over the same client', async () => {
    const user = await createOwnUser('one_socket_watch');
    const client = newGraphqlWsClient(server.wsUrl);
    const queue = new MessageQueue('graphql-ws over one socket');
    const unsubscribe = client.subscribe(
      { query: USER_SUBSCRIPTION, variables: { pk: user.id, requestId: REQUEST_ID } },
      queue.sink(),
    );
    try {
      assert.deepEqual(userEnvelope(await queue.next(), 'one socket'), subscribeInstance(REQUEST_ID));
      const mutation = new MessageQueue('mutation over ws');
      client.subscribe(
        { query: UPDATE_USER, variables: { pk: user.id, username: 'one_socket_renamed' } },
        mutation.sink(),
      );
      assert.equal((await mutation.next()).data.updateUser.username, 'one_socket_renamed');
      assert.deepEqual(
        userEnvelope(await queue.next(), 'one socket'),
        update(REQUEST_ID, { ...user, username: 'one_socket_renamed' }),
      );
    } finally {
      unsubscribe();
      await withTimeout(client.dispose(), 'graphql-ws dispose');
    }
  });

  test('Apollo Client over GraphQLWsLink alone (it adds __typename everywhere) subscribes and mutates', async () => {
    const user = await createOwnUser('one_socket_apollo');
    const wsClient = newGraphqlWsClient(server.wsUrl);
    const apollo = new ApolloClient({ link: new GraphQLWsLink(wsClient), cache: new InMemoryCache() });
    const queue = new MessageQueue('apollo over one socket');
    const subscription = apollo
      .subscribe({ query: gql(USER_SUBSCRIPTION), variables: { pk: user.id, requestId: REQUEST_ID } })
      .subscribe({ next: (r) => queue.push(r), error: (error) => queue.end({ error }) });
    try {
      const first = await queue.next();
      assert.equal(first.data.user.__typename, 'UserTypeEnvelope');
      assert.deepEqual(userEnvelope(first, 'apollo ws server'), subscribeInstance(REQUEST_ID));
      const renamed = await withTimeout(
        apollo.mutate({ mutation: gql(UPDATE_USER), variables: { pk: user.id, username: 'apollo_ws_renamed' } }),
        'apollo mutate over ws',
      );
      assert.equal(renamed.data.updateUser.username, 'apollo_ws_renamed');
      const next = await queue.next();
      assert.equal(next.data.user.data.__typename, 'UserType');
      assert.deepEqual(
        userEnvelope(next, 'apollo ws server'),
        update(REQUEST_ID, { ...user, username: 'apollo_ws_renamed' }),
      );
    } finally {
      subscription.unsubscribe();
      await withTimeout(wsClient.dispose(), 'graphql-ws dispose');
    }
  });
});
