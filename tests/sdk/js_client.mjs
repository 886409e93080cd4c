// Drives the official `centrifuge` JS SDK (v5, over the `ws` WebSocket
// implementation) against a running ringcast server. Run by tests/sdk_js.rs.
//
// Environment:
//   RINGCAST_WS_URL                 ws://127.0.0.1:PORT/connection/websocket (required)
//   RINGCAST_TOKEN                  connection JWT (optional, may be empty)
//   RINGCAST_API_URL                http://127.0.0.1:PORT/api (required)
//   RINGCAST_API_KEY                value of the X-API-Key header (may be empty)
//   RINGCAST_CHANNEL                channel to subscribe and publish to (required)
//   RINGCAST_EXPECT_PUBLISH_DENIED  "1": the client publish must fail with code 103
//   RINGCAST_REQUIRE_OFFSET         "0": do not require publication offsets > 0
//                                   (default: required, i.e. history enabled)
//   RINGCAST_TIMEOUT_MS             overall timeout, default 15000
//
// Output: one JSON object per line on stdout, e.g.
//   {"step":"connected","client":"...","transport":"websocket"}
//   {"step":"subscribed","channel":"..."}
//   {"step":"api_publication","offset":1}
//   {"step":"client_publish","ok":true,"offset":2}   or   {"step":"client_publish","denied":103}
//   {"step":"done"}
// On failure: {"step":"error","message":"..."} and exit code 1. Success: exit 0.
// Diagnostics (SDK events with codes) go to stderr.

import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import {
  API_URL,
  CHANNEL,
  TOKEN,
  WS_URL,
  apiPublish,
  describeError,
  emit,
  env,
  finish,
  finished,
  log,
  safeJson,
  setClient,
  start,
  timeoutMs,
  within,
} from './harness.mjs';

const EXPECT_DENIED = env.RINGCAST_EXPECT_PUBLISH_DENIED === '1';
const REQUIRE_OFFSET = env.RINGCAST_REQUIRE_OFFSET !== '0';
const TIMEOUT_MS = timeoutMs(15000);
const PUBLICATION_WAIT_MS = 5000;

function fail(message) {
  finish(1, message);
}

const overallTimer = start(TIMEOUT_MS);

// Publications arrive asynchronously (possibly before the HTTP API call
// returns), so they are queued and matched against waiters by predicate.
const received = [];
const waiters = [];

function onPublication(ctx) {
  log('publication:', { channel: ctx.channel, offset: ctx.offset, data: ctx.data });
  const idx = waiters.findIndex((w) => w.pred(ctx));
  if (idx >= 0) {
    const [w] = waiters.splice(idx, 1);
    w.resolve(ctx);
  } else {
    received.push(ctx);
  }
}

function waitPublication(pred, what) {
  const idx = received.findIndex(pred);
  if (idx >= 0) {
    const [ctx] = received.splice(idx, 1);
    return Promise.resolve(ctx);
  }
  return within(
    new Promise((resolve) => waiters.push({ pred, resolve })),
    PUBLICATION_WAIT_MS,
    what,
  );
}

function checkOffset(ctx, what) {
  if (!REQUIRE_OFFSET) return;
  if (typeof ctx.offset !== 'number' || !(ctx.offset > 0)) {
    throw new Error(`${what}: expected numeric offset > 0, got ${safeJson(ctx.offset)}`);
  }
}

async function main() {
  if (!WS_URL || !API_URL || !CHANNEL) {
    throw new Error('RINGCAST_WS_URL, RINGCAST_API_URL and RINGCAST_CHANNEL must be set');
  }

  const opts = { websocket: WebSocket, name: 'ringcast-js-sdk-test' };
  if (TOKEN !== '') opts.token = TOKEN;
  const client = setClient(new Centrifuge(WS_URL, opts));

  client.on('state', (ctx) => log('client state:', ctx.oldState, '->', ctx.newState));
  client.on('connecting', (ctx) => log('client connecting: code', ctx.code, 'reason', ctx.reason));
  client.on('error', (ctx) =>
    log('client error: type', ctx.type, 'code', ctx.error && ctx.error.code, 'message', ctx.error && ctx.error.message),
  );
  client.on('disconnected', (ctx) => {
    log('client disconnected: code', ctx.code, 'reason', ctx.reason);
    if (!finished) fail(`client disconnected unexpectedly: code ${ctx.code} reason ${ctx.reason}`);
  });

  const connected = new Promise((resolve) => client.once('connected', resolve));

  const sub = client.newSubscription(CHANNEL);
  sub.on('subscribing', (ctx) => log('sub subscribing: code', ctx.code, 'reason', ctx.reason));
  sub.on('error', (ctx) =>
    log('sub error: type', ctx.type, 'code', ctx.error && ctx.error.code, 'message', ctx.error && ctx.error.message),
  );
  sub.on('unsubscribed', (ctx) => {
    log('sub unsubscribed: code', ctx.code, 'reason', ctx.reason);
    if (!finished) fail(`subscription unsubscribed unexpectedly: code ${ctx.code} reason ${ctx.reason}`);
  });
  sub.on('publication', onPublication);
  const subscribed = new Promise((resolve) => sub.once('subscribed', resolve));

  sub.subscribe();
  client.connect();

  const connCtx = await connected;
  emit({ step: 'connected', client: connCtx.client, transport: connCtx.transport });

  const subCtx = await subscribed;
  emit({
    step: 'subscribed',
    channel: subCtx.channel,
    recoverable: subCtx.recoverable,
    positioned: subCtx.positioned,
    streamPosition: subCtx.streamPosition || null,
  });

  // Server API publish -> subscription receives it.
  const apiPubP = waitPublication((p) => p.data && p.data.from === 'api', 'api publication');
  apiPubP.catch(() => {}); // handled below; avoid an unhandled rejection while the POST is in flight
  await apiPublish(CHANNEL, { from: 'api', n: 1 });
  const apiPub = await apiPubP;
  if (apiPub.data.n !== 1) {
    throw new Error(`api publication: unexpected data ${safeJson(apiPub.data)}`);
  }
  checkOffset(apiPub, 'api publication');
  emit({ step: 'api_publication', offset: apiPub.offset === undefined ? null : apiPub.offset });

  // Client-side publish.
  if (EXPECT_DENIED) {
    let result;
    try {
      result = await sub.publish({ from: 'client' });
    } catch (e) {
      log('client publish rejected:', e);
      if (e && e.code === 103) {
        emit({ step: 'client_publish', denied: 103 });
      } else {
        throw new Error(`client publish: expected error code 103, got ${describeError(e)}`);
      }
      result = undefined;
    }
    if (result !== undefined) {
      throw new Error(`client publish: expected denial with code 103, but it succeeded: ${safeJson(result)}`);
    }
  } else {
    const clientPubP = waitPublication((p) => p.data && p.data.from === 'client', 'client publication');
    clientPubP.catch(() => {});
    try {
      await sub.publish({ from: 'client' });
    } catch (e) {
      throw new Error(`client publish failed: ${describeError(e)}`);
    }
    const clientPub = await clientPubP;
    checkOffset(clientPub, 'client publication');
    if (REQUIRE_OFFSET && !(clientPub.offset > apiPub.offset)) {
      throw new Error(`client publication: offset ${clientPub.offset} not greater than ${apiPub.offset}`);
    }
    emit({ step: 'client_publish', ok: true, offset: clientPub.offset === undefined ? null : clientPub.offset });
  }

  if (received.length > 0) {
    log('note: unmatched publications:', received.map((p) => p.data));
  }

  clearTimeout(overallTimer);
  emit({ step: 'done' });
  finish(0); // the disconnect is expected from here on
}

main().catch((e) => fail(e && e.message ? e.message : describeError(e)));
