// What the SDK scripts (js_client.mjs, js_recovery.mjs, js_sub_token.mjs,
// js_server_subs.mjs, js_presence.mjs) share: their common environment, JSON step lines on stdout and
// diagnostics on stderr, the end of a run (one exit, with an error line on failure) and its
// deadlines, the HTTP API's publish, and a `ws` WebSocket that traces every frame.
//
// A script calls `start(...)` first, registers its SDK client with `setClient`, and ends
// with `finish(code, message?)`: `message` is emitted as {"step":"error","message":...}.

import path from 'node:path';
import WebSocket from 'ws';

export const env = process.env;
export const WS_URL = env.RINGCAST_WS_URL || '';
export const TOKEN = env.RINGCAST_TOKEN || '';
export const CHANNEL = env.RINGCAST_CHANNEL || '';
export const API_URL = (env.RINGCAST_API_URL || '').replace(/\/+$/, '');
export const API_KEY = env.RINGCAST_API_KEY || '';
export const DEBUG = env.RINGCAST_DEBUG === '1';

export const START = Date.now();
// The script's name, for the diagnostics: js_client, js_recovery, ...
const NAME = path.basename(process.argv[1] || 'js', '.mjs');

/** RINGCAST_TIMEOUT_MS when positive, else `defaultMs`; at most `maxMs`. */
export function timeoutMs(defaultMs, maxMs = Infinity) {
  const asked = Number(env.RINGCAST_TIMEOUT_MS);
  return Math.min(asked > 0 ? asked : defaultMs, maxMs);
}

// ---- output ----

/** One JSON step line on stdout. */
export function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

export function safeJson(v) {
  try {
    return JSON.stringify(v);
  } catch (_) {
    return String(v);
  }
}

/** A diagnostic line on stderr: `[script ms ms] parts...`. */
export function log(...args) {
  const ms = String(Date.now() - START).padStart(5);
  process.stderr.write(`[${NAME} ${ms} ms] ` + args.map((a) => (typeof a === 'string' ? a : safeJson(a))).join(' ') + '\n');
}

export function describeError(e, { stack = false } = {}) {
  if (e === null || e === undefined) return String(e);
  if (e instanceof Error) return (stack && e.stack) || e.message;
  if (typeof e === 'object') return safeJson(e);
  return String(e);
}

// The SDK's debug log goes through console.debug, which node writes to stdout: keep stdout
// for the JSON lines.
console.debug = (...args) => log('sdk debug:', ...args);
console.log = (...args) => log('console.log:', ...args);

// ---- the end of a run ----

let client = null;
/** Whether the run has ended (a disconnect or unsubscribe from then on is expected). */
export let finished = false;
let deadline = Infinity;

/** The SDK client `finish` disconnects. */
export function setClient(c) {
  client = c;
  return c;
}

/** Ends the run once: an error line with `message` if given, the client disconnected, exit
 * with `code` once stdout has drained (no SDK timer keeps the process past this). */
export function finish(code, message) {
  if (finished) return;
  finished = true;
  if (message !== undefined) emit({ step: 'error', message });
  try {
    if (client) client.disconnect();
  } catch (e) {
    log('disconnect threw:', describeError(e));
  }
  process.stdout.write('', () => process.exit(code));
}

/** Fails the run on an unhandled rejection or exception and after `ms` at most; returns the
 * overall timer. */
export function start(ms) {
  deadline = START + ms;
  process.on('unhandledRejection', (reason) => finish(1, 'unhandled rejection: ' + describeError(reason, { stack: true })));
  process.on('uncaughtException', (err) => finish(1, 'uncaught exception: ' + describeError(err, { stack: true })));
  return setTimeout(() => finish(1, `overall timeout after ${ms} ms`), ms);
}

// ---- failures seen by event handlers end every wait at once ----

let failWith = null;
const failed = new Promise((_, reject) => {
  failWith = reject;
});
failed.catch(() => {});
let expectEnd = false;

/** From now on a disconnect or unsubscribe is expected: `handlerFailure` reports nothing. */
export function expectTheEnd() {
  expectEnd = true;
}

/** Fails the current and every later `within`, unless the end is expected. */
export function handlerFailure(message) {
  if (!expectEnd) failWith(new Error(message));
}

/** Waits for `promise`, at most `ms` (and never past the overall deadline); rejects as soon
 * as a handler reported a failure. */
export function within(promise, ms, what) {
  const left = Math.max(0, Math.min(ms, deadline - Date.now() - 200));
  let timer;
  return Promise.race([
    promise,
    failed,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${left} ms waiting for ${what}`)), left);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- the HTTP API ----

/** POST {API_URL}/publish {channel, data} (5 s at most); the reply, or an error that starts
 * with `what`. */
export async function apiPublish(channel, data, what = 'api publish') {
  const headers = { 'Content-Type': 'application/json' };
  if (API_KEY !== '') headers['X-API-Key'] = API_KEY;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 5000);
  let resp;
  let text;
  try {
    resp = await fetch(`${API_URL}/publish`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ channel, data }),
      signal: controller.signal,
    });
    text = await resp.text();
  } catch (e) {
    throw new Error(`${what}: ${describeError(e)}`);
  } finally {
    clearTimeout(timer);
  }
  log('api publish response:', resp.status, text);
  if (!resp.ok) throw new Error(`${what}: HTTP ${resp.status}: ${text}`);
  let body;
  try {
    body = JSON.parse(text);
  } catch (_) {
    throw new Error(`${what}: response is not JSON: ${text}`);
  }
  if (body && body.error) throw new Error(`${what}: error ${safeJson(body.error)}`);
  return body;
}

// ---- the wire, as the SDK sends and receives it ----

/** Each JSON object in a frame's text (one per line); lines that are not JSON are skipped. */
function eachJson(text, handle) {
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let obj;
    try {
      obj = JSON.parse(line);
    } catch (_) {
      continue; // not JSON: nothing to track
    }
    handle(obj);
  }
}

/** A `ws` WebSocket class for the SDK's `websocket` option that logs every frame (cut to
 * `maxLogChars`) and the close, and hands each command sent to `onCommand`, each reply or
 * push received to `onReply`, and the close's {code, reason} to `onClose`. The SDK sets
 * onmessage/onclose; these are extra listeners. */
export function tracingWebSocket({ onCommand = () => {}, onReply = () => {}, onClose = () => {}, maxLogChars = Infinity }) {
  const textOf = (data) => (typeof data === 'string' ? data : Buffer.from(data).toString('utf8'));
  const short = (text) => (text.length > maxLogChars ? text.slice(0, maxLogChars) + '...' : text);
  return class TracingWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener('message', (event) => {
        const text = textOf(event.data);
        log('frame in:', short(text));
        eachJson(text, onReply);
      });
      this.addEventListener('close', (event) => {
        const close = { code: event.code, reason: event.reason };
        log('websocket closed:', close);
        onClose(close);
      });
    }

    send(data, ...rest) {
      const text = textOf(data);
      log('frame out:', short(text));
      eachJson(text, onCommand);
      return super.send(data, ...rest);
    }
  };
}
