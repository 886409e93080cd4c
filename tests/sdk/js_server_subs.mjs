// Server-side subscriptions with the official `centrifuge` JS SDK (v5, over the `ws`
// WebSocket implementation) through lost connections. The connection token's `channels`
// claim subscribes the connection to its channels on the server; the SDK reports them with
// client-level events (centrifuge 5.8.0: `client.on('subscribed' | 'publication' |
// 'unsubscribed')`, no Subscription object). The SDK keeps each recoverable server-side
// subscription's position and sends it back in the `subs` of its next connect command; the
// connect reply's `subs[channel]` then carries `was_recovering`, `recovered` and the missed
// publications. The Rust test (tests/sdk_js.rs) publishes through the API and cuts the
// connection; the SDK reconnects by itself; this script only reports what it sees.
//
// Environment:
//   RINGCAST_WS_URL      ws://127.0.0.1:PORT/connection/websocket (required)
//   RINGCAST_TOKEN       connection JWT with a `channels` claim (required)
//   RINGCAST_CHANNEL     the server-side channel to watch, e.g. feed (required)
//   RINGCAST_FINAL_N     exit once a publication with data.n == this arrives (required)
//   RINGCAST_TIMEOUT_MS  overall timeout, default 25000 (at most 29000)
//   RINGCAST_DEBUG       "1": the SDK's debug log on stderr too
//
// Output: one JSON object per line on stdout:
//   {"step":"connected","client":"...","sent_subs":{...}|null}   (sent_subs: the `subs` of the
//                                                                  connect command it answers)
//   {"step":"subscribed","channel":"feed","count":N,"recoverable":bool,"positioned":bool,
//    "wasRecovering":bool,"recovered":bool,"hasRecoveredPublications":bool,
//    "offset":N|null,"epoch":"..."|null,"reply_offsets":[...]}  (reply_offsets: offsets of
//                                                                  the publications in the
//                                                                  connect reply's subs)
//   {"step":"publication","channel":"feed","n":N,"offset":N|null}
//   {"step":"connecting","code":N,"reason":"..."}
//   {"step":"done","publications":[offsets...]}
// On failure: {"step":"error","message":"..."} and exit code 1. Success: exit 0.
// Diagnostics go to stderr: SDK events and every WebSocket frame.

import { Centrifuge } from 'centrifuge';
import { CHANNEL, DEBUG, TOKEN, WS_URL, emit, env, finish, finished, log, setClient, start, timeoutMs, tracingWebSocket } from './harness.mjs';

const FINAL_N = Number(env.RINGCAST_FINAL_N);
// The whole run stays under 30 s, whatever is asked.
start(timeoutMs(25000, 29000));

// ---- the wire, as the SDK sends and receives it ----

const wire = {
  connectIds: new Set(), // ids of the connect commands sent
  lastConnectSubs: null, // `subs` of the last connect command sent (null: none)
  lastReplySubs: null, // `subs` of the last connect reply received
};

/** `ws` with every frame traced, and the connect commands and replies recorded in `wire`. */
const TracingWebSocket = tracingWebSocket({
  onCommand: (cmd) => {
    if (cmd.connect) {
      wire.connectIds.add(cmd.id);
      wire.lastConnectSubs = cmd.connect.subs === undefined ? null : cmd.connect.subs;
    }
  },
  onReply: (frame) => {
    if (frame.id && wire.connectIds.has(frame.id) && frame.connect) {
      wire.lastReplySubs = frame.connect.subs || {};
    }
  },
});

// ---- the client ----

if (!WS_URL || !TOKEN || !CHANNEL || !(FINAL_N > 0)) {
  finish(1, 'RINGCAST_WS_URL, RINGCAST_TOKEN, RINGCAST_CHANNEL and RINGCAST_FINAL_N must be set');
} else {
  const offsets = []; // offsets of the publications received on CHANNEL, in order
  let subscribedCount = 0;
  const client = setClient(new Centrifuge(WS_URL, {
    websocket: TracingWebSocket,
    token: TOKEN,
    name: 'ringcast-js-server-subs-test',
    debug: DEBUG,
    timeout: 5000,
    minReconnectDelay: 100,
    maxReconnectDelay: 400,
  }));
  client.on('state', (ctx) => log('client state:', ctx.oldState, '->', ctx.newState));
  client.on('error', (ctx) => log('client error: type', ctx.type, 'error', ctx.error));
  client.on('connecting', (ctx) => {
    log('client connecting: code', ctx.code, 'reason', ctx.reason);
    emit({ step: 'connecting', code: ctx.code, reason: ctx.reason });
  });
  client.on('connected', (ctx) => {
    log('client connected:', ctx.client);
    emit({ step: 'connected', client: ctx.client, sent_subs: wire.lastConnectSubs });
  });
  client.on('disconnected', (ctx) => {
    if (!finished) finish(1, `client disconnected for good: code ${ctx.code} reason ${ctx.reason}`);
  });
  // Server-side subscriptions: client-level events.
  client.on('subscribed', (ctx) => {
    log('server-side subscribed:', ctx);
    if (ctx.channel !== CHANNEL) return;
    subscribedCount += 1;
    const replySub = (wire.lastReplySubs && wire.lastReplySubs[ctx.channel]) || {};
    emit({
      step: 'subscribed',
      channel: ctx.channel,
      count: subscribedCount,
      recoverable: ctx.recoverable,
      positioned: ctx.positioned,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      hasRecoveredPublications: ctx.hasRecoveredPublications,
      offset: ctx.streamPosition ? ctx.streamPosition.offset : null,
      epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
      reply_offsets: (replySub.publications || []).map((p) => (p.offset === undefined ? null : p.offset)),
    });
  });
  client.on('unsubscribed', (ctx) => {
    if (!finished) finish(1, `server-side subscription ${ctx.channel} unsubscribed`);
  });
  client.on('publication', (ctx) => {
    log('server-side publication:', ctx.channel, 'offset', ctx.offset, 'data', ctx.data);
    if (ctx.channel !== CHANNEL) return;
    const n = ctx.data && ctx.data.n;
    offsets.push(ctx.offset === undefined ? null : ctx.offset);
    emit({ step: 'publication', channel: ctx.channel, n, offset: ctx.offset === undefined ? null : ctx.offset });
    if (n === FINAL_N) {
      emit({ step: 'done', publications: offsets });
      finish(0);
    }
  });
  client.connect();
}
