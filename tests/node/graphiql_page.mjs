// Shared helpers for the GraphiQL tests: launch Debian's Chromium, open the
// demo's GraphiQL page with its unpkg.com assets answered from node_modules,
// type a document into the query editor, run it, and wait (bounded) for the
// result pane to show a given answer.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { NODE_DIR, WAIT_MS } from './helpers.mjs';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
export const SKIP = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is missing; install Debian's Chromium with: apt-get update && apt-get install -y chromium`;

const CONTENT_TYPES = { '.js': 'application/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/**
 * Map https://unpkg.com/<name>@<version>/<file> to node_modules/<name>/<file>,
 * or explain why it cannot be served.
 */
function localAsset(url) {
  const m = /^\/((?:@[^/]+\/)?[^/@]+)@([^/]+)\/(.+)$/.exec(new URL(url).pathname);
  if (!m) return { error: `unrecognised unpkg URL ${url}` };
  const [, name, version, file] = m;
  const pkgDir = path.join(NODE_DIR, 'node_modules', name);
  const pkgJson = path.join(pkgDir, 'package.json');
  if (!existsSync(pkgJson)) return { error: `${name} is not installed in tests/node (wanted ${version})` };
  const installed = JSON.parse(readFileSync(pkgJson, 'utf8')).version;
  if (installed !== version) return { error: `${url} wants ${name}@${version}, node_modules has ${installed}` };
  const filePath = path.join(pkgDir, file);
  if (!filePath.startsWith(pkgDir + path.sep) || !existsSync(filePath)) {
    return { error: `${url}: no file ${file} in ${name}@${version}` };
  }
  return { filePath, contentType: CONTENT_TYPES[path.extname(file)] || 'application/octet-stream' };
}

/** The text of the CodeMirror editor inside `selector` (GraphiQL 3 uses CodeMirror 5). */
export function editorValue(page, selector) {
  return page.evaluate((sel) => {
    const el = document.querySelector(`${sel} .CodeMirror`);
    return el && el.CodeMirror ? el.CodeMirror.getValue() : null;
  }, selector);
}

/**
 * A page whose unpkg.com assets come from node_modules and whose other
 * requests go nowhere but the demo server; what went wrong is collected.
 */
export async function openPage(browser) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(WAIT_MS);
  const problems = []; // asset misses, blocked requests, page errors
  const consoleLines = [];
  const websockets = [];
  page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('websocket', (ws) => websockets.push(ws.url()));

  const servedAssets = [];
  await page.route('**/*', async (route) => {
    const url = route.request().url();
    const { hostname } = new URL(url);
    if (hostname === '127.0.0.1' || url.startsWith('data:')) return route.continue();
    if (hostname === 'unpkg.com') {
      const asset = localAsset(url);
      if (asset.error) {
        problems.push(asset.error);
        return route.fulfill({ status: 404, body: asset.error });
      }
      servedAssets.push(url);
      return route.fulfill({
        status: 200,
        contentType: asset.contentType,
        headers: { 'access-control-allow-origin': '*' },
        body: readFileSync(asset.filePath),
      });
    }
    problems.push(`blocked request to ${url}`);
    return route.abort('blockedbyclient');
  });
  return { page, problems, consoleLines, websockets, servedAssets };
}

/** Replace the query editor's text with `document`; wait until GraphiQL parsed it as `kind`. */
export async function typeDocument(page, document, kind) {
  const editor = page.locator('.graphiql-query-editor .CodeMirror');
  await editor.waitFor({ state: 'visible' });
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(document);
  assert.equal(await editorValue(page, '.graphiql-query-editor'), document);
  // GraphiQL parses the editor's text after a short debounce and picks the
  // websocket only once it knows the operation is a subscription; Run
  // before that goes over HTTP. A person never clicks that fast; wait
  // (bounded) for the parse, as they would by looking.
  await page.waitForFunction((wanted) => {
    const cm = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;
    return Boolean(cm.documentAST && cm.operations && cm.operations.length === 1
      && cm.operations[0].operation === wanted);
  }, kind, { timeout: WAIT_MS, polling: 50 });
}

/**
 * Wait (bounded) until the result pane shows JSON whose `data[field]` has
 * every key/value of `expected` (values compared with ===); returns the JSON.
 * "Shows": the lines CodeMirror rendered on the page hold that same text
 * (whitespace aside), not only its editor model.
 */
export async function waitForData(page, field, expected) {
  try {
    const handle = await page.waitForFunction(
      ([f, wanted]) => {
        const el = document.querySelector('.graphiql-response .CodeMirror');
        if (!el || !el.CodeMirror) return null;
        try {
          const text = el.CodeMirror.getValue();
          const parsed = JSON.parse(text);
          const answer = parsed && parsed.data && parsed.data[f];
          if (!answer || !Object.entries(wanted).every(([k, v]) => answer[k] === v)) return null;
          const compact = (t) => t.replace(/[\s\u200b]+/g, '');
          const shown = [...el.querySelectorAll('pre.CodeMirror-line')].map((line) => line.textContent).join('');
          return compact(shown) === compact(text) ? parsed : null;
        } catch {
          return null; // empty or still rendering
        }
      },
      [field, expected],
      { timeout: WAIT_MS, polling: 100 },
    );
    return await handle.jsonValue();
  } catch (err) {
    const last = await editorValue(page, '.graphiql-response').catch(() => null);
    throw new Error(
      `result pane never showed ${field} with ${JSON.stringify(expected)}: ${err.message}\nlast content: ${last}`,
    );
  }
}

/**
 * Type `headers` (an object, as JSON) into GraphiQL's Headers tab, as a person
 * would paste a token: GraphiQL sends them with every HTTP request and as the
 * websocket's connection_init payload.
 */
export async function typeHeaders(page, headers) {
  const text = JSON.stringify(headers);
  await page.locator('.graphiql-editor-tools button[data-name="headers"]').click();
  const editor = page.locator('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror');
  await editor.waitFor({ state: 'visible' });
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
  const typed = await page.evaluate(
    () => document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror').CodeMirror.getValue(),
  );
  assert.equal(typed, text);
}
