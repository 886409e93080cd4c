// Drives the official `centrifuge` JS SDK through lost connections: it subscribes with
// recovery, and the Rust test (tests/sdk_js.rs) drops its connection or restarts the
// server while the backend publishes. The SDK reconnects by itself; this script only
// reports what it sees. Run by tests/sdk_js.rs.
//
// Environment:
//   RINGCAST_WS_URL      ws://127.0.0.1:PORT/connection/websocket (required)
//   RINGCAST_TOKEN       connection JWT (required)
//   RINGCAST_CHANNEL     channel to subscribe to (required)
//   RINGCAST_FINAL_N     exit once a publication with data.n == this arrives (required)
//   RINGCAST_TIMEOUT_MS  overall timeout, default 60000
//
// Output: one JSON object per line on stdout:
//   {"step":"subscribed","recovered":bool,"wasRecovering":bool,"offset":N,"epoch":"..."}
//   {"step":"publication","n":N,"offset":N}
//   {"step":"connecting","code":N}
//   {"step":"done"}
// On failure: {"step":"error","message":"..."} and exit code 1.

import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { CHANNEL, TOKEN, WS_URL, emit, env, finish, finished, log, setClient, start, timeoutMs } from './harness.mjs';

const FINAL_N = Number(env.RINGCAST_FINAL_N);

start(timeoutMs(60000));

if (!WS_URL || !TOKEN || !CHANNEL || !(FINAL_N > 0)) {
  finish(1, 'RINGCAST_WS_URL, RINGCAST_TOKEN, RINGCAST_CHANNEL and RINGCAST_FINAL_N must be set');
} else {
  const client = setClient(new Centrifuge(WS_URL, {
    websocket: WebSocket,
    token: TOKEN,
    name: 'ringcast-js-recovery-test',
    minReconnectDelay: 100,
    maxReconnectDelay: 400,
  }));
  client.on('connecting', (ctx) => emit({ step: 'connecting', code: ctx.code }));
  client.on('disconnected', (ctx) => {
    if (!finished) finish(1, `client disconnected for good: code ${ctx.code} reason ${ctx.reason}`);
  });
  const sub = client.newSubscription(CHANNEL, { recoverable: true, positioned: true });
  sub.on('subscribed', (ctx) =>
    emit({
      step: 'subscribed',
      recovered: ctx.recovered,
      wasRecovering: ctx.wasRecovering,
      recoverable: ctx.recoverable,
      offset: ctx.streamPosition ? ctx.streamPosition.offset : null,
      epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
    }),
  );
  sub.on('error', (ctx) => log('sub error', ctx.error));
  sub.on('unsubscribed', (ctx) => {
    if (!finished) finish(1, `unsubscribed: code ${ctx.code} reason ${ctx.reason}`);
  });
  sub.on('publication', (ctx) => {
    emit({ step: 'publication', n: ctx.data && ctx.data.n, offset: ctx.offset });
    if (ctx.data && ctx.data.n === FINAL_N) {
      emit({ step: 'done' });
      finish(0);
    }
  });
  sub.subscribe();
  client.connect();
}
