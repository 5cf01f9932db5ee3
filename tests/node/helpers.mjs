// Shared helpers for the JavaScript end-to-end tests: start the demo server
// (`python -m schema_examples serve`) on a free port with a fresh SQLite
// database, talk GraphQL over HTTP, and await subscription messages with a
// bounded wait so that a hang fails the test instead of stalling the run.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const NODE_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(NODE_DIR, '..', '..');

/** How long any single wait in these tests may take. */
export const WAIT_MS = 10_000;
const SERVER_START_MS = 30_000;

/** The Python that runs the demo server: $GQL_OBSERVER_PYTHON, else the repo's venv, else python3. */
export function pythonExecutable() {
  if (process.env.GQL_OBSERVER_PYTHON) return process.env.GQL_OBSERVER_PYTHON;
  const venvPython = path.join(REPO_ROOT, '.venv', 'bin', 'python');
  return existsSync(venvPython) ? venvPython : 'python3';
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.setTimeout(1000, () => done(false));
  });
}

/**
 * Start the demo server on a free port with a fresh SQLite database (and the
 * environment variables `env` on top of this process's).
 * Resolves once the port accepts connections; rejects (with the server's
 * output) if it exits first or does not open the port within 30 s.
 */
export async function startDemoServer({ databaseUrl = null, env: extraEnv = {} } = {}) {
  const tmp = mkdtempSync(path.join(tmpdir(), 'gql-observer-js-'));
  const port = await freePort();
  const database = databaseUrl || `sqlite:///${path.join(tmp, 'db.sqlite3')}`;
  // DEBUG on, as scripts/demo.sh serves the demo: GraphiQL and introspection follow it.
  const env = { ...process.env, ...extraEnv, DATABASE_URL: database, DEBUG: '1' };
  delete env.REDIS_URL;
  // The demo's own settings (pytest exports its test settings, which ignore DATABASE_URL).
  delete env.DJANGO_SETTINGS_MODULE;
  const child = spawn(
    pythonExecutable(),
    ['-m', 'schema_examples', 'serve', '--host', '127.0.0.1', '--port', String(port)],
    { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.once('error', (err) => {
      exited = { code: null, signal: null, error: err };
      resolve(exited);
    });
  });

  const server = {
    port,
    httpUrl: `http://127.0.0.1:${port}/graphql/`,
    wsUrl: `ws://127.0.0.1:${port}/graphql/`,
    databaseUrl: database,
    output: () => output,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => { if (!exited) child.kill('SIGKILL'); }, 10_000);
        await exitPromise;
        clearTimeout(timer);
      }
      rmSync(tmp, { recursive: true, force: true });
    },
  };

  const deadline = Date.now() + SERVER_START_MS;
  for (;;) {
    if (exited) {
      await server.stop();
      throw new Error(
        `demo server exited before opening port ${port} (${JSON.stringify(exited)}):\n${output}`,
      );
    }
    if (await canConnect(port)) return server;
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`demo server did not open port ${port} within ${SERVER_START_MS} ms:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Log `username` in: a Django session made by `python -m schema_examples shell`
 * on the server's database; resolves to its key (the `sessionid` cookie's value).
 */
export function loginSession(server, username) {
  const code = [
    'from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY',
    'from django.contrib.auth.models import User',
    'from django.contrib.sessions.backends.db import SessionStore',
    `user = User.objects.get(username=${JSON.stringify(username)})`,
    'session = SessionStore()',
    'session[SESSION_KEY] = str(user.pk)',
    "session[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'",
    'session[HASH_SESSION_KEY] = user.get_session_auth_hash()',
    'session.create()',
    'print(session.session_key)',
  ].join('\n');
  const env = { ...process.env, DATABASE_URL: server.databaseUrl };
  delete env.REDIS_URL;
  delete env.DJANGO_SETTINGS_MODULE;
  return new Promise((resolve, reject) => {
    const child = spawn(pythonExecutable(), ['-m', 'schema_examples', 'shell', '-c', code], {
      cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.once('error', reject);
    child.once('exit', (status) => {
      clearTimeout(timer);
      const key = out.trim().split('\n').pop();
      if (status === 0 && key) resolve(key);
      else reject(new Error(`could not log ${username} in (exit ${status}): ${err}`));
    });
  });
}

/**
 * POST a GraphQL operation as JSON (with `headers` on top, e.g. a bearer
 * token's Authorization); returns `data`, throwing on HTTP or GraphQL errors.
 */
export async function graphqlHttp(url, query, variables = {}, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`HTTP ${res.status} from ${url}: ${text}`);
  const body = JSON.parse(text);
  if (body.errors) throw new Error(`GraphQL errors: ${JSON.stringify(body.errors)}`);
  return body.data;
}

export const UPDATE_USER = `
  mutation UpdateUser($pk: ID!, $username: String) {
    updateUser(pk: $pk, username: $username) { id username email }
  }`;

/** Rename a user over HTTP with the `updateUser` mutation. */
export async function renameUser(url, pk, username) {
  const data = await graphqlHttp(url, UPDATE_USER, { pk: String(pk), username });
  return data.updateUser;
}

export const CREATE_USER = `
  mutation CreateUser($username: String!, $email: String!, $password: String!) {
    createUser(username: $username, email: $email, password: $password) { id username email }
  }`;

/** Create a user (email `<username>@example.com`) over HTTP with the `createUser` mutation. */
export async function createUser(url, username) {
  const data = await graphqlHttp(url, CREATE_USER, {
    username, email: `${username}@example.com`, password: 'correct-horse-battery-staple',
  });
  return data.createUser;
}

/**
 * A queue of values pushed by a callback-style sink (next/error/complete),
 * read with `next()`, which rejects if nothing arrives within `timeoutMs`.
 */
export class MessageQueue {
  constructor(label) {
    this.label = label;
    this.items = [];
    this.waiters = [];
    this.ended = null; // {error} or {complete: true}
    this.received = [];
  }

  sink() {
    return {
      next: (value) => this.push(value),
      error: (error) => this.end({ error }),
      complete: () => this.end({ complete: true }),
    };
  }

  push(value) {
    this.received.push(value);
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(value);
    else this.items.push(value);
  }

  end(how) {
    if (this.ended) return;
    this.ended = how;
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.endError());
  }

  endError() {
    if (this.ended.error) {
      const e = this.ended.error;
      const detail = e instanceof Error ? e.stack || e.message
        : Array.isArray(e) ? JSON.stringify(e)
          : e && typeof e === 'object' && 'code' in e ? `close event code=${e.code} reason=${e.reason}`
            : String(e);
      return new Error(`${this.label}: subscription errored: ${detail}`);
    }
    return new Error(`${this.label}: subscription completed; received so far: ${JSON.stringify(this.received)}`);
  }

  next(timeoutMs = WAIT_MS) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    if (this.ended) return Promise.reject(this.endError());
    return new Promise((resolve, reject) => {
      const waiter = {};
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(
          `${this.label}: no message within ${timeoutMs} ms; received so far: ${JSON.stringify(this.received)}`,
        ));
      }, timeoutMs);
      waiter.resolve = (v) => { clearTimeout(timer); resolve(v); };
      waiter.reject = (e) => { clearTimeout(timer); reject(e); };
      this.waiters.push(waiter);
    });
  }
}

/** Await `promise`, failing with `what` if it takes longer than `timeoutMs`. */
export async function withTimeout(promise, what, timeoutMs = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
