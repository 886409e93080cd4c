#!/usr/bin/env python3
"""Server-side subscriptions with the official Python SDK (`centrifuge-python` from PyPI,
asyncio over `websockets`) through lost connections. Run by tests/sdk_python.rs from the venv
in .venv/.

The connection token's `channels` claim subscribes the connection to its channels on the
server; the SDK reports them to the client's event handler (centrifuge-python 0.7.0:
`ClientEventHandler.on_subscribed / on_subscribing / on_unsubscribed / on_publication` with
the `Server*Context` classes, no Subscription object). The SDK keeps each recoverable
server-side subscription's position and sends it back in the `subs` of its next connect
command; the connect reply's `subs[channel]` then carries `was_recovering`, `recovered` and
the missed publications. The Rust test publishes through the API and cuts the connection;
the SDK reconnects by itself; this script only reports what it sees.

Environment:
  RINGCAST_WS_URL     ws://127.0.0.1:PORT/connection/websocket (required)
  RINGCAST_TOKEN      connection JWT with a `channels` claim (required)
  RINGCAST_CHANNEL    the server-side channel to watch, e.g. feed (required)
  RINGCAST_FINAL_N    exit once a publication with data.n == this arrives (required)
  RINGCAST_TIMEOUT_S  overall timeout, default 25 (at most 29)
  RINGCAST_DEBUG      "1": the SDK's debug log on stderr

Output: one JSON object per line on stdout:
  {"step":"connected","client":"...","sent_subs":{...}|null}   (sent_subs: the `subs` of the
                                                                 connect command it answers)
  {"step":"subscribed","channel":"feed","count":N,"recoverable":bool,"positioned":bool,
   "was_recovering":bool,"recovered":bool,"offset":N|null,"epoch":"..."|null,
   "reply_offsets":[...]}                  (reply_offsets: offsets of the publications in the
                                             connect reply's subs[channel])
  {"step":"publication","channel":"feed","n":N,"offset":N}
  {"step":"connecting","code":N,"reason":"..."}
  {"step":"done","publications":[offsets...]}
On failure: {"step":"error","message":"..."} and exit code 1. Success: exit 0.
Diagnostics go to stderr: SDK events and every WebSocket frame.
"""

import asyncio

# The harness first: it reports a missing SDK as an error line.
from harness import (
    CHANNEL,
    ENV,
    TOKEN,
    WS_URL,
    emit,
    frame_objects,
    log,
    main,
    make_client,
    run_to_end,
    tracing_client,
)

from centrifuge import (
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    ServerPublicationContext,
    ServerSubscribedContext,
    ServerSubscribingContext,
    ServerUnsubscribedContext,
)

try:
    FINAL_N = int(ENV.get("RINGCAST_FINAL_N", "0") or "0")
except ValueError:
    FINAL_N = 0


class Wire:
    """What went over the WebSocket: the connect commands and their replies."""

    def __init__(self) -> None:
        self.connect_ids = set()
        self.last_connect_subs = None  # `subs` of the last connect command sent (None: none)
        self.last_reply_subs = None  # `subs` of the last connect reply received

    def sent(self, data) -> None:
        for command in frame_objects("out", data):
            if "connect" in command:
                self.connect_ids.add(command.get("id"))
                self.last_connect_subs = command["connect"].get("subs")

    def received(self, data) -> None:
        for frame in frame_objects("in", data):
            if frame.get("id") in self.connect_ids and isinstance(frame.get("connect"), dict):
                self.last_reply_subs = frame["connect"].get("subs") or {}


WIRE = Wire()


TracingClient = tracing_client(WIRE)


class State:
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        # Set with the summary line when FINAL_N arrives, or with an error message.
        self.done = loop.create_future()
        self.ending = False  # disconnect/unsubscribe from here on are expected
        self.subscribed_count = 0
        self.offsets = []  # offsets of the publications received on CHANNEL, in order

    def fail(self, message: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(message))


class Events(ClientEventHandler):
    """Client-level events: the connection's and those of its server-side subscriptions."""

    def __init__(self, state: State) -> None:
        self.state = state

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        log("client connecting: code", ctx.code, "reason", ctx.reason)
        emit({"step": "connecting", "code": ctx.code, "reason": ctx.reason})

    async def on_connected(self, ctx: ConnectedContext) -> None:
        log("client connected:", ctx.client)
        emit({"step": "connected", "client": ctx.client, "sent_subs": WIRE.last_connect_subs})

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        log("client disconnected: code", ctx.code, "reason", ctx.reason)
        if not self.state.ending:
            self.state.fail(f"client disconnected for good: code {ctx.code} reason {ctx.reason}")

    async def on_error(self, ctx: ErrorContext) -> None:
        log("client error: code", ctx.code, "error", repr(ctx.error))

    async def on_subscribing(self, ctx: ServerSubscribingContext) -> None:
        log("server-side subscribing:", ctx.channel)

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        log("server-side subscribed:", ctx)
        if ctx.channel != CHANNEL:
            return
        self.state.subscribed_count += 1
        position = ctx.stream_position
        reply_sub = (WIRE.last_reply_subs or {}).get(ctx.channel) or {}
        emit(
            {
                "step": "subscribed",
                "channel": ctx.channel,
                "count": self.state.subscribed_count,
                "recoverable": ctx.recoverable,
                "positioned": ctx.positioned,
                "was_recovering": ctx.was_recovering,
                "recovered": ctx.recovered,
                "offset": position.offset if position else None,
                "epoch": position.epoch if position else None,
                "reply_offsets": [p.get("offset") for p in reply_sub.get("publications") or []],
            }
        )

    async def on_unsubscribed(self, ctx: ServerUnsubscribedContext) -> None:
        log("server-side unsubscribed:", ctx.channel)
        if not self.state.ending:
            self.state.fail(f"server-side subscription {ctx.channel} unsubscribed")

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        pub = ctx.pub
        log("server-side publication:", ctx.channel, "offset", pub.offset, "data", pub.data)
        if ctx.channel != CHANNEL:
            return
        n = pub.data.get("n") if isinstance(pub.data, dict) else None
        self.state.offsets.append(pub.offset)
        emit({"step": "publication", "channel": ctx.channel, "n": n, "offset": pub.offset})
        if n == FINAL_N and not self.state.done.done():
            self.state.done.set_result({"step": "done", "publications": self.state.offsets})


async def run() -> int:
    if not WS_URL or not TOKEN or not CHANNEL or FINAL_N <= 0:
        emit(
            {
                "step": "error",
                "message": "RINGCAST_WS_URL, RINGCAST_TOKEN, RINGCAST_CHANNEL and "
                "RINGCAST_FINAL_N must be set",
            }
        )
        return 1
    state = State()
    client = make_client(
        Events(state),
        "ringcast-py-server-subs-test",
        cls=TracingClient,
        min_reconnect_delay=0.1,
        max_reconnect_delay=0.4,
    )

    async def listen() -> dict:
        await client.connect()
        # Shielded: a timeout cancels this wait, not the future the event handlers set.
        return await asyncio.shield(state.done)

    def ending() -> None:
        state.ending = True

    return await run_to_end(client, listen(), ending)


if __name__ == "__main__":
    main(run)
