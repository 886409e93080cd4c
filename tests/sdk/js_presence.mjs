// Presence, join/leave and the server API's user actions with the official `centrifuge` JS
// SDK (v5, over the `ws` WebSocket implementation) against a running ringcast server. Run by
// tests/sdk_js.rs, which drives the server side (the API calls, killing a process) and checks
// what this script reports.
//
// What centrifuge 5.8.0 offers for them: the subscription option `joinLeave: true` (sends
// `join_leave: true` in subscribe), `Subscription.presence()` → {clients: {id: ClientInfo}},
// `Subscription.presenceStats()` → {numClients, numUsers}, the subscription events
// `join` / `leave` ({channel, info: {client, user, connInfo?, chanInfo?}}), the client event
// `disconnected` ({code, reason}; codes 3500-3999 and 4500-4999 are terminal: no reconnect),
// and for server-side subscriptions the client-level events `subscribed` / `publication` /
// `unsubscribed`.
//
// Environment:
//   RINGCAST_SCENARIO         presence | disconnect | server_subs (default: presence)
//   RINGCAST_WS_URL           ws://127.0.0.1:PORT/connection/websocket (required)
//   RINGCAST_TOKEN            connection JWT (required)
//   RINGCAST_CHANNEL          presence: the channel to subscribe to with joinLeave (e.g.
//                             room:lobby); server_subs: the channel the API subscribes the
//                             user to (e.g. room:srv); not needed for disconnect
//   RINGCAST_EXPECT_CLIENTS   presence: how many clients presence() must list before the
//                             script reports it (default 2; the other process may subscribe
//                             later, so it asks again until then)
//   RINGCAST_TIMEOUT_MS       overall timeout, default 25000 (at most 29000)
//   RINGCAST_DEBUG            "1": the SDK's debug log on stderr too
//
// Scenarios:
//   presence     connect, subscribe to CHANNEL with joinLeave, report every join and leave
//                event, ask presence() until it lists EXPECT_CLIENTS clients and report it
//                with presenceStats(); then wait for the leave of another client (the Rust
//                test kills that client's process), report presence() once more, and end
//                when a publication {"end": true} arrives on CHANNEL (the Rust test sends it
//                through the API once it has checked the presence with this client in it).
//   disconnect   connect and wait for the server to disconnect the client (the Rust test
//                calls /api/disconnect); report the SDK's disconnected event and whether the
//                SDK tried to connect again afterwards.
//   server_subs  connect with no subscription and listen with the client-level events for
//                server-side subscriptions (the Rust test calls /api/subscribe, publishes,
//                calls /api/unsubscribe); end once CHANNEL is unsubscribed.
//
// Output: one JSON object per line on stdout:
//   {"step":"connected","client":"..."}
//   {"step":"subscribed","channel":"..."}                                  (presence)
//   {"step":"join","channel":"...","client":"...","user":"..."}           (presence, each)
//   {"step":"presence","clients":{"<id>":{"client":"...","user":"..."}},"polls":N}
//   {"step":"presence_stats","num_clients":N,"num_users":N}
//   {"step":"leave","channel":"...","client":"...","user":"..."}          (presence, each)
//   {"step":"presence_after","clients":{...}}                             (presence)
//   {"step":"disconnected","code":N,"reason":"...","close":{"code":N,"reason":"..."}|null,
//    "disconnect_pushes":[...],"connects_sent":N,"connecting_after":[...],"state":"..."}
//   {"step":"server_subscribed","channel":"...","data":...}               (server_subs)
//   {"step":"server_publication","channel":"...","data":...,"offset":N|null}
//   {"step":"server_unsubscribed","channel":"..."}
//   {"step":"done"}
// On failure: {"step":"error","message":"..."} and exit code 1. Success: exit 0.
// Diagnostics go to stderr: SDK events with their codes and every WebSocket frame.

import { Centrifuge } from 'centrifuge';
import {
  CHANNEL,
  DEBUG,
  TOKEN,
  WS_URL,
  describeError,
  emit,
  env,
  expectTheEnd,
  finish,
  finished,
  handlerFailure,
  log,
  safeJson,
  setClient,
  sleep,
  start,
  timeoutMs,
  tracingWebSocket,
  within,
} from './harness.mjs';

const SCENARIO = env.RINGCAST_SCENARIO || 'presence';
const EXPECT_CLIENTS = Number(env.RINGCAST_EXPECT_CLIENTS) > 0 ? Number(env.RINGCAST_EXPECT_CLIENTS) : 2;
// The whole run stays under 30 s, whatever is asked.
const TIMEOUT_MS = timeoutMs(25000, 29000);
// How long one step (connect, subscribe, a presence call) may take at most.
const STEP_MS = 8000;
// How long to wait for what another process or the Rust test does (the other client's
// subscribe, the kill, an API call): the rest of the run at most.
const WAIT_MS = 20000;
// presence: the pause between two presence() calls while the other client is not listed.
const POLL_MS = 50;
// disconnect: how long to keep watching for a reconnect attempt after the disconnect.
const SETTLE_MS = 300;

start(TIMEOUT_MS);

// ---- the wire, as the SDK sends and receives it ----

const wire = {
  connectsSent: 0, // connect commands sent
  disconnectPushes: [], // {code, reason}
  close: null, // {code, reason} of the last WebSocket close
};

const TracingWebSocket = tracingWebSocket({
  maxLogChars: 400,
  onCommand: (cmd) => {
    if (cmd.connect) wire.connectsSent += 1;
  },
  onReply: (frame) => {
    if (frame.push && frame.push.disconnect) wire.disconnectPushes.push(frame.push.disconnect);
  },
  onClose: (close) => {
    wire.close = close;
  },
});

// ---- helpers ----

function makeClient(name) {
  const c = new Centrifuge(WS_URL, {
    websocket: TracingWebSocket,
    token: TOKEN,
    name,
    debug: DEBUG,
    timeout: 5000,
  });
  c.on('state', (ctx) => log('client state:', ctx.oldState, '->', ctx.newState));
  c.on('error', (ctx) => log('client error: type', ctx.type, 'error', ctx.error));
  return c;
}

/** A promise and its resolve function. */
function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** {client, user} of a ClientInfo (connInfo/chanInfo when present). */
function clientInfo(info) {
  const out = { client: info.client, user: info.user };
  if (info.connInfo !== undefined) out.conn_info = info.connInfo;
  if (info.chanInfo !== undefined) out.chan_info = info.chanInfo;
  return out;
}

function presenceClients(result) {
  const clients = {};
  for (const [id, info] of Object.entries(result.clients || {})) clients[id] = clientInfo(info);
  return clients;
}

/** Connects `client`; a lost connection from then on fails the run. */
async function connect(client) {
  const connected = new Promise((resolve) => client.once('connected', resolve));
  let wasConnected = false;
  client.on('connecting', (ctx) => {
    log('client connecting: code', ctx.code, 'reason', ctx.reason);
    if (wasConnected) handlerFailure(`connection lost: connecting with code ${ctx.code} reason ${ctx.reason}`);
  });
  client.connect();
  const ctx = await within(connected, STEP_MS, 'connected');
  wasConnected = true;
  emit({ step: 'connected', client: ctx.client });
  return ctx;
}

// ---- scenarios ----

async function scenarioPresence() {
  if (!CHANNEL) throw new Error('RINGCAST_CHANNEL must be set');
  const client = setClient(makeClient('ringcast-js-presence-test'));
  client.on('disconnected', (ctx) => {
    log('client disconnected: code', ctx.code, 'reason', ctx.reason);
    handlerFailure(`client disconnected unexpectedly: code ${ctx.code} reason ${ctx.reason}`);
  });
  const sub = client.newSubscription(CHANNEL, { joinLeave: true });
  const subscribed = deferred();
  let subscribedOnce = false;
  sub.on('state', (ctx) => log('sub state:', ctx.oldState, '->', ctx.newState));
  sub.on('error', (ctx) => log('sub error: type', ctx.type, 'error', ctx.error));
  sub.on('subscribing', (ctx) => {
    log('sub subscribing: code', ctx.code, 'reason', ctx.reason);
    if (subscribedOnce) handlerFailure(`subscription lost: subscribing with code ${ctx.code} reason ${ctx.reason}`);
  });
  sub.on('subscribed', (ctx) => {
    log('sub subscribed:', ctx.channel);
    subscribedOnce = true;
    subscribed.resolve(ctx);
  });
  sub.on('unsubscribed', (ctx) =>
    handlerFailure(`subscription unsubscribed unexpectedly: code ${ctx.code} reason ${ctx.reason}`),
  );
  let me = null; // this connection's client id
  const otherLeft = deferred();
  const ended = deferred();
  sub.on('publication', (ctx) => {
    log('publication:', ctx.channel, 'data', ctx.data);
    if (ctx.data && ctx.data.end === true) ended.resolve(ctx);
  });
  sub.on('join', (ctx) => {
    log('join:', ctx.channel, ctx.info);
    emit({ step: 'join', channel: ctx.channel, ...clientInfo(ctx.info) });
  });
  sub.on('leave', (ctx) => {
    log('leave:', ctx.channel, ctx.info);
    emit({ step: 'leave', channel: ctx.channel, ...clientInfo(ctx.info) });
    if (ctx.info.client === me) {
      handlerFailure(`a leave event for this client itself: ${safeJson(ctx.info)}`);
    } else {
      otherLeft.resolve(ctx);
    }
  });

  me = (await connect(client)).client;
  sub.subscribe();
  const subCtx = await within(subscribed.promise, STEP_MS, 'subscribed');
  emit({ step: 'subscribed', channel: subCtx.channel });

  // The other client may subscribe later: ask until presence lists them all.
  let polls = 0;
  const listed = (async () => {
    for (;;) {
      polls += 1;
      const result = await sub.presence();
      if (Object.keys(result.clients || {}).length >= EXPECT_CLIENTS || finished) return result;
      await sleep(POLL_MS);
    }
  })();
  const presence = await within(listed, WAIT_MS, `presence() listing ${EXPECT_CLIENTS} clients`);
  emit({ step: 'presence', clients: presenceClients(presence), polls });
  const stats = await within(sub.presenceStats(), STEP_MS, 'presenceStats()');
  emit({ step: 'presence_stats', num_clients: stats.numClients, num_users: stats.numUsers });

  // The Rust test kills the other client's process: its leave must come.
  await within(otherLeft.promise, WAIT_MS, 'the leave of another client');
  const after = await within(sub.presence(), STEP_MS, 'presence() after the leave');
  emit({ step: 'presence_after', clients: presenceClients(after) });
  await within(ended.promise, WAIT_MS, 'the publication {"end": true}');
  return { step: 'done' };
}

async function scenarioDisconnect() {
  const client = setClient(makeClient('ringcast-js-disconnect-test'));
  const disconnected = deferred();
  let connectedOnce = false;
  const connectingAfter = []; // connecting events once connected: reconnect attempts
  client.on('connecting', (ctx) => {
    if (connectedOnce) connectingAfter.push({ code: ctx.code, reason: ctx.reason });
  });
  client.on('disconnected', (ctx) => {
    log('client disconnected: code', ctx.code, 'reason', ctx.reason);
    disconnected.resolve(ctx);
  });
  // A `connecting` event before the disconnect is a lost connection, not the server's
  // disconnect: it fails the run (connect() registers that).
  await connect(client);
  connectedOnce = true;
  const ctx = await within(disconnected.promise, WAIT_MS, 'the disconnect');
  expectTheEnd();
  // A reconnect would start at once (a terminal code must not start one): watch a little.
  const connectsAtDisconnect = wire.connectsSent;
  await within(sleep(SETTLE_MS), SETTLE_MS + 1000, 'reconnect attempts after the disconnect');
  emit({
    step: 'disconnected',
    code: ctx.code,
    reason: ctx.reason,
    close: wire.close,
    disconnect_pushes: wire.disconnectPushes,
    connects_sent: wire.connectsSent,
    connects_after_disconnect: wire.connectsSent - connectsAtDisconnect,
    connecting_after: connectingAfter,
    state: client.state,
  });
  return { step: 'done' };
}

async function scenarioServerSubs() {
  if (!CHANNEL) throw new Error('RINGCAST_CHANNEL must be set');
  const client = setClient(makeClient('ringcast-js-api-subs-test'));
  client.on('disconnected', (ctx) => {
    log('client disconnected: code', ctx.code, 'reason', ctx.reason);
    handlerFailure(`client disconnected unexpectedly: code ${ctx.code} reason ${ctx.reason}`);
  });
  const unsubscribed = deferred();
  client.on('subscribed', (ctx) => {
    log('server-side subscribed:', ctx);
    emit({ step: 'server_subscribed', channel: ctx.channel, data: ctx.data === undefined ? null : ctx.data });
  });
  client.on('subscribing', (ctx) => log('server-side subscribing:', ctx));
  client.on('publication', (ctx) => {
    log('server-side publication:', ctx.channel, 'offset', ctx.offset, 'data', ctx.data);
    emit({ step: 'server_publication', channel: ctx.channel, data: ctx.data, offset: ctx.offset === undefined ? null : ctx.offset });
  });
  client.on('unsubscribed', (ctx) => {
    log('server-side unsubscribed:', ctx);
    emit({ step: 'server_unsubscribed', channel: ctx.channel });
    if (ctx.channel === CHANNEL) unsubscribed.resolve(ctx);
  });
  await connect(client);
  await within(unsubscribed.promise, WAIT_MS, `the server-side subscription to ${CHANNEL} and its end`);
  return { step: 'done' };
}

const SCENARIOS = { presence: scenarioPresence, disconnect: scenarioDisconnect, server_subs: scenarioServerSubs };

async function main() {
  if (!SCENARIOS[SCENARIO]) throw new Error(`unknown RINGCAST_SCENARIO ${safeJson(SCENARIO)}`);
  if (!WS_URL || !TOKEN) throw new Error('RINGCAST_WS_URL and RINGCAST_TOKEN must be set');
  const done = await SCENARIOS[SCENARIO]();
  expectTheEnd();
  if (finished) return;
  emit(done);
  finish(0);
}

main().catch((e) => finish(1, describeError(e)));
