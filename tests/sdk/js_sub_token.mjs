// Subscription tokens with the official `centrifuge` JS SDK (v5, over the `ws` WebSocket
// implementation) against a running ringcast server. Run by tests/sdk_js.rs.
//
// The subscription gets its tokens through the SDK's `getToken` option,
// `getToken(ctx: { channel }) => Promise<string>` (SubscriptionOptions in centrifuge 5.8.0),
// which runs RINGCAST_SUBTOKEN_CMD with `--user USER --channel CHANNEL` appended. The SDK
// calls it to subscribe and again, to send `sub_refresh`, when the `ttl` of a subscribe (or
// sub_refresh) reply saying `expires: true` has passed.
//
// Environment:
//   RINGCAST_SCENARIO      personal | other_user (default: personal)
//   RINGCAST_WS_URL        ws://127.0.0.1:PORT/connection/websocket (required)
//   RINGCAST_TOKEN         connection JWT for RINGCAST_USER (required)
//   RINGCAST_USER          the connection's user (required)
//   RINGCAST_CHANNEL       channel to subscribe to, e.g. $personal:USER (required)
//   RINGCAST_SUBTOKEN_CMD  command printing a subscription token (required), run by /bin/sh;
//                          `--user U --channel C` is appended (as separate, unsplit arguments)
//   RINGCAST_API_URL       http://127.0.0.1:PORT/api (personal)
//   RINGCAST_API_KEY       value of the X-API-Key header (may be empty)
//   RINGCAST_STAY_S        personal: stay subscribed this many seconds between the two
//                          publications (short-lived tokens must be refreshed meanwhile)
//   RINGCAST_OTHER_USER    other_user: getToken signs its tokens for this user instead
//   RINGCAST_TIMEOUT_MS    overall timeout, default 25000 (at most 29000)
//   RINGCAST_DEBUG         "1": the SDK's debug log on stderr too
//
// Scenarios:
//   personal    connect, subscribe with getToken, receive a publication sent through
//               POST {API_URL}/publish, optionally stay RINGCAST_STAY_S seconds (any
//               unsubscribe, resubscribe or lost connection meanwhile fails the run), receive
//               a second API publication.
//   other_user  getToken returns a token for the channel signed for RINGCAST_OTHER_USER: the
//               server must close the connection with 3500, which the SDK must report in its
//               disconnected event; the subscription must never be subscribed.
//
// Output: one JSON object per line on stdout, e.g.
//   {"step":"connected","client":"...","transport":"websocket"}
//   {"step":"get_token","call":1,"channel":"$personal:u","user":"u"}
//   {"step":"subscribed","channel":"...","expires":true,"ttl":3}      (from the subscribe reply)
//   {"step":"api_publish","n":1,"reply":{...}}
//   {"step":"api_publication","n":1,"offset":null}
//   {"step":"stayed_subscribed","seconds":5,"get_token_calls":2,"sub_refreshes":[{"expires":true,"ttl":3}]}
//   {"step":"done","get_token_calls":N,"resubscribes":M,"sub_refreshes":[...]}          (personal)
//   {"step":"disconnected","code":3500,"reason":"...","close":{"code":3500,"reason":"..."},
//    "disconnect_pushes":[],"subscribe_replies":[],"client_events":[...],
//    "sub_state":"subscribing","sub_events":[...],"get_token_calls":1}                (other_user)
//   {"step":"done","disconnect_code":3500}                                            (other_user)
// On failure: {"step":"error","message":"..."} and exit code 1. Success: exit 0.
// Diagnostics go to stderr: SDK events with their codes and every WebSocket frame.

import { execFile } from 'node:child_process';
import { Centrifuge } from 'centrifuge';
import {
  API_URL,
  CHANNEL,
  DEBUG,
  TOKEN,
  WS_URL,
  apiPublish as postPublish,
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

const SCENARIO = env.RINGCAST_SCENARIO || 'personal';
const USER = env.RINGCAST_USER || '';
const SUBTOKEN_CMD = env.RINGCAST_SUBTOKEN_CMD || '';
const STAY_S = Number(env.RINGCAST_STAY_S) > 0 ? Number(env.RINGCAST_STAY_S) : 0;
const OTHER_USER = env.RINGCAST_OTHER_USER || '';
// The whole run stays under 30 s, whatever is asked.
const TIMEOUT_MS = timeoutMs(25000, 29000);
// How long one step (connect, subscribe, a publication, an API call) may take at most.
const STEP_MS = 8000;
// How long the subscription token command may run.
const SUBTOKEN_CMD_MS = 5000;
// other_user: how long to keep listening for subscription events after the disconnect.
const SETTLE_MS = 300;

start(TIMEOUT_MS);

// ---- the wire, as the SDK sends and receives it ----

const wire = {
  methods: new Map(), // command id -> method
  subscribeReplies: [], // {expires, ttl} or {error}
  subRefreshes: [], // replies to sub_refresh: {expires, ttl} or {error}
  unsubscribePushes: [], // {code, reason}
  disconnectPushes: [], // {code, reason}
  close: null, // {code, reason} of the WebSocket close
};

/** `ws` with every frame traced, and what the SDK's wire says recorded in `wire`. */
const TracingWebSocket = tracingWebSocket({
  maxLogChars: 400,
  onCommand: (cmd) => {
    const method = Object.keys(cmd).find((k) => k !== 'id');
    if (cmd.id) wire.methods.set(cmd.id, method);
  },
  onReply: (frame) => {
    const method = frame.id ? wire.methods.get(frame.id) : undefined;
    const result = (r) => (frame.error ? { error: frame.error } : { expires: r && r.expires === true, ttl: r && r.ttl !== undefined ? r.ttl : null });
    if (method === 'subscribe') wire.subscribeReplies.push(result(frame.subscribe));
    if (method === 'sub_refresh') wire.subRefreshes.push(result(frame.sub_refresh));
    if (frame.push && frame.push.unsubscribe) wire.unsubscribePushes.push(frame.push.unsubscribe);
    if (frame.push && frame.push.disconnect) wire.disconnectPushes.push(frame.push.disconnect);
  },
  onClose: (close) => {
    wire.close = close;
  },
});

// ---- subscription tokens ----

let getTokenCalls = 0;

function runSubtokenCmd(user, channel) {
  return new Promise((resolve, reject) => {
    // The shell splits RINGCAST_SUBTOKEN_CMD; "$@" passes the appended arguments unsplit.
    execFile(
      '/bin/sh',
      ['-c', SUBTOKEN_CMD + ' "$@"', 'sh', '--user', user, '--channel', channel],
      { timeout: SUBTOKEN_CMD_MS, maxBuffer: 64 * 1024 },
      (err, stdout, stderr) => {
        const token = String(stdout).trim();
        if (err || !token) {
          reject(new Error(`subscription token command for user ${user} channel ${channel} failed: ` +
            `${err ? err.message : 'empty output'}; stderr: ${String(stderr).trim()}`));
        } else {
          resolve(token);
        }
      },
    );
  });
}

/** The subscription's getToken: tokens signed for `user`. A token that cannot be had ends
 * the run (the SDK itself would retry with backoff). */
function tokenGetter(user) {
  return async (ctx) => {
    getTokenCalls += 1;
    const call = getTokenCalls;
    emit({ step: 'get_token', call, channel: ctx && ctx.channel, user });
    if (!ctx || ctx.channel !== CHANNEL) {
      handlerFailure(`getToken called with ${safeJson(ctx)}, not for ${CHANNEL}`);
    }
    try {
      const token = await runSubtokenCmd(user, CHANNEL);
      log(`getToken call ${call} ->`, token.slice(0, 16) + '...');
      return token;
    } catch (e) {
      handlerFailure(`getToken call ${call}: ${describeError(e)}`);
      throw e;
    }
  };
}

// ---- the HTTP API ----

async function apiPublish(n) {
  const body = await postPublish(CHANNEL, { n }, `api publish n=${n}`);
  emit({ step: 'api_publish', n, reply: body });
  return body;
}

// Publications may arrive before the API call returns: kept, and looked up by data.n.
const publications = [];
let publicationArrived = () => {};

function publication(n) {
  return new Promise((resolve) => {
    const look = () => {
      const pub = publications.find((p) => p.data && p.data.n === n);
      if (pub) {
        resolve(pub);
      } else {
        publicationArrived = look;
      }
    };
    look();
  });
}

async function publishAndReceive(n) {
  const received = publication(n);
  await within(apiPublish(n), STEP_MS, `api publish n=${n}`);
  const pub = await within(received, STEP_MS, `publication n=${n}`);
  emit({ step: 'api_publication', n, offset: pub.offset === undefined ? null : pub.offset });
}

// ---- the client ----

function makeClient() {
  const c = new Centrifuge(WS_URL, {
    websocket: TracingWebSocket,
    token: TOKEN,
    name: 'ringcast-js-sub-token-test',
    debug: DEBUG,
    timeout: 5000,
  });
  c.on('state', (ctx) => log('client state:', ctx.oldState, '->', ctx.newState));
  c.on('error', (ctx) => log('client error: type', ctx.type, 'error', ctx.error));
  return c;
}

const subEvents = []; // what the subscription reported, in order
const clientEvents = []; // other_user: what the client reported, in order

function watchSubscription(sub) {
  sub.on('state', (ctx) => log('sub state:', ctx.oldState, '->', ctx.newState));
  sub.on('subscribing', (ctx) => {
    log('sub subscribing: code', ctx.code, 'reason', ctx.reason);
    subEvents.push({ event: 'subscribing', code: ctx.code, reason: ctx.reason });
  });
  sub.on('subscribed', (ctx) => {
    log('sub subscribed:', ctx.channel);
    subEvents.push({ event: 'subscribed' });
  });
  sub.on('unsubscribed', (ctx) => {
    log('sub unsubscribed: code', ctx.code, 'reason', ctx.reason);
    subEvents.push({ event: 'unsubscribed', code: ctx.code, reason: ctx.reason });
  });
  sub.on('error', (ctx) => {
    log('sub error: type', ctx.type, 'error', ctx.error);
    subEvents.push({ event: 'error', type: ctx.type, code: ctx.error && ctx.error.code, message: ctx.error && ctx.error.message });
  });
  sub.on('publication', (ctx) => {
    log('publication: offset', ctx.offset, 'data', ctx.data);
    publications.push(ctx);
    publicationArrived();
  });
}

async function scenarioPersonal() {
  if (!API_URL) throw new Error('RINGCAST_API_URL must be set');
  const client = setClient(makeClient());
  const connected = new Promise((resolve) => client.once('connected', resolve));
  let subscribedCount = 0;
  client.on('connecting', (ctx) => {
    log('client connecting: code', ctx.code, 'reason', ctx.reason);
    if (subscribedCount > 0) handlerFailure(`connection lost: connecting with code ${ctx.code} reason ${ctx.reason}`);
  });
  client.on('disconnected', (ctx) => {
    log('client disconnected: code', ctx.code, 'reason', ctx.reason);
    handlerFailure(`client disconnected unexpectedly: code ${ctx.code} reason ${ctx.reason}`);
  });

  const sub = client.newSubscription(CHANNEL, { getToken: tokenGetter(USER) });
  watchSubscription(sub);
  let firstSubscribed;
  const subscribed = new Promise((resolve) => {
    firstSubscribed = resolve;
  });
  sub.on('subscribed', (ctx) => {
    subscribedCount += 1;
    firstSubscribed(ctx);
  });
  sub.on('subscribing', (ctx) => {
    if (subscribedCount > 0) handlerFailure(`subscription lost: subscribing with code ${ctx.code} reason ${ctx.reason}`);
  });
  sub.on('unsubscribed', (ctx) =>
    handlerFailure(`subscription unsubscribed unexpectedly: code ${ctx.code} reason ${ctx.reason}`),
  );

  client.connect();
  const connCtx = await within(connected, STEP_MS, 'connected');
  emit({ step: 'connected', client: connCtx.client, transport: connCtx.transport });

  sub.subscribe();
  const subCtx = await within(subscribed, STEP_MS, 'subscribed');
  const reply = wire.subscribeReplies[wire.subscribeReplies.length - 1] || {};
  emit({ step: 'subscribed', channel: subCtx.channel, expires: reply.expires === true, ttl: reply.ttl === undefined ? null : reply.ttl });

  await publishAndReceive(1);

  if (STAY_S > 0) {
    // Stay subscribed: a lost subscription or connection fails the wait at once.
    await within(sleep(STAY_S * 1000), STAY_S * 1000 + 1000, 'the end of the stay');
    if (sub.state !== 'subscribed') throw new Error(`subscription is ${sub.state} after the stay`);
    emit({ step: 'stayed_subscribed', seconds: STAY_S, get_token_calls: getTokenCalls, sub_refreshes: wire.subRefreshes });
  }

  await publishAndReceive(2);
  return {
    step: 'done',
    get_token_calls: getTokenCalls,
    // Subscribed events after the first: the subscription was lost and made again.
    resubscribes: subscribedCount - 1,
    sub_refreshes: wire.subRefreshes,
    unsubscribe_pushes: wire.unsubscribePushes,
  };
}

async function scenarioOtherUser() {
  if (!OTHER_USER) throw new Error('RINGCAST_OTHER_USER must be set');
  const client = setClient(makeClient());
  const connected = new Promise((resolve) => client.once('connected', resolve));
  const disconnected = new Promise((resolve) => client.once('disconnected', resolve));
  client.on('connecting', (ctx) => {
    log('client connecting: code', ctx.code, 'reason', ctx.reason);
    clientEvents.push({ event: 'connecting', code: ctx.code, reason: ctx.reason });
  });
  client.on('disconnected', (ctx) => {
    log('client disconnected: code', ctx.code, 'reason', ctx.reason);
    clientEvents.push({ event: 'disconnected', code: ctx.code, reason: ctx.reason });
  });
  client.on('error', (ctx) =>
    clientEvents.push({ event: 'error', type: ctx.type, code: ctx.error && ctx.error.code, message: ctx.error && ctx.error.message }),
  );

  const sub = client.newSubscription(CHANNEL, { getToken: tokenGetter(OTHER_USER) });
  watchSubscription(sub);
  sub.on('subscribed', () => handlerFailure('subscribed with a token for another user'));

  client.connect();
  const connCtx = await within(connected, STEP_MS, 'connected');
  emit({ step: 'connected', client: connCtx.client, transport: connCtx.transport });

  sub.subscribe();
  const ctx = await within(disconnected, STEP_MS, 'the disconnect');
  // Subscription events that follow the disconnect come now, if at all.
  await within(sleep(SETTLE_MS), SETTLE_MS + 1000, 'subscription events after the disconnect');
  expectTheEnd();
  emit({
    step: 'disconnected',
    code: ctx.code,
    reason: ctx.reason,
    close: wire.close,
    disconnect_pushes: wire.disconnectPushes,
    subscribe_replies: wire.subscribeReplies,
    client_events: clientEvents,
    sub_state: sub.state,
    sub_events: subEvents,
    get_token_calls: getTokenCalls,
  });
  if (ctx.code !== 3500) {
    throw new Error(`expected the SDK to report disconnect code 3500, got ${ctx.code} (${ctx.reason})`);
  }
  return { step: 'done', disconnect_code: ctx.code };
}

const SCENARIOS = { personal: scenarioPersonal, other_user: scenarioOtherUser };

async function main() {
  if (!SCENARIOS[SCENARIO]) throw new Error(`unknown RINGCAST_SCENARIO ${safeJson(SCENARIO)}`);
  if (!WS_URL || !TOKEN || !USER || !CHANNEL || !SUBTOKEN_CMD) {
    throw new Error('RINGCAST_WS_URL, RINGCAST_TOKEN, RINGCAST_USER, RINGCAST_CHANNEL and RINGCAST_SUBTOKEN_CMD must be set');
  }
  const done = await SCENARIOS[SCENARIO]();
  expectTheEnd();
  if (finished) return;
  emit(done);
  finish(0);
}

main().catch((e) => finish(1, describeError(e)));
