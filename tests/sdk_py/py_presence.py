#!/usr/bin/env python3
"""Presence, join/leave and the server API's disconnect with the official Python SDK
(`centrifuge-python` from PyPI, asyncio over `websockets`), as tests/sdk/js_presence.mjs does
for the JavaScript SDK. Run by tests/sdk_python.rs from the venv in .venv/, which drives the
server side (the API calls, killing a process) and checks what this script reports.

What centrifuge-python 0.7.0 offers for them: `Client.new_subscription(channel,
join_leave=True)` (sends `join_leave: true` in subscribe), `Subscription.presence()` ->
PresenceResult(clients={id: ClientInfo(client, user, conn_info, chan_info)}),
`Subscription.presence_stats()` -> PresenceStatsResult(num_clients, num_users),
`SubscriptionEventHandler.on_join / on_leave` (JoinContext / LeaveContext with `info`), and
`ClientEventHandler.on_disconnected` (DisconnectedContext with `code` and `reason`; codes
3500-3999 and 4500-4999 are terminal: no reconnect).

Environment:
  RINGCAST_SCENARIO         presence | disconnect (default: presence)
  RINGCAST_WS_URL           ws://127.0.0.1:PORT/connection/websocket (required)
  RINGCAST_TOKEN            connection JWT (required)
  RINGCAST_CHANNEL          presence: the channel to subscribe to with join_leave (e.g.
                            room:lobby)
  RINGCAST_EXPECT_CLIENTS   presence: how many clients presence() must list before the script
                            reports it (default 2; the other process may subscribe later, so
                            it asks again until then)
  RINGCAST_TIMEOUT_S        overall timeout, default 25 (at most 29)
  RINGCAST_DEBUG            "1": the SDK's debug log on stderr

Scenarios:
  presence    connect, subscribe to CHANNEL with join_leave, report every join and leave
              event, ask presence() until it lists EXPECT_CLIENTS clients and report it with
              presence_stats(); then wait for the leave of another client (the Rust test kills
              that client's process), report presence() once more, and end when a publication
              {"end": true} arrives on CHANNEL (the Rust test sends it through the API once it
              has checked the presence with this client in it).
  disconnect  connect and wait for the server to disconnect the client (the Rust test calls
              /api/disconnect); report the SDK's disconnected event and whether the SDK
              tried to connect again afterwards.

Output: one JSON object per line on stdout:
  {"step":"connected","client":"..."}
  {"step":"subscribed","channel":"..."}                                    (presence)
  {"step":"join","channel":"...","client":"...","user":"..."}             (presence, each)
  {"step":"presence","clients":{"<id>":{"client":"...","user":"..."}},"polls":N}
  {"step":"presence_stats","num_clients":N,"num_users":N}
  {"step":"leave","channel":"...","client":"...","user":"..."}            (presence, each)
  {"step":"presence_after","clients":{...}}                               (presence)
  {"step":"disconnected","code":N,"reason":"...","disconnect_pushes":[...],
   "connects_sent":N,"connects_after_disconnect":N,"connecting_after":[...],"state":"..."}
  {"step":"done"}
On failure: {"step":"error","message":"..."} and exit code 1. Success: exit 0.
Diagnostics go to stderr: SDK events with their codes and every WebSocket frame.
"""

import asyncio
import json

# The harness first: it reports a missing SDK as an error line.
from harness import (
    CHANNEL,
    ENV,
    TOKEN,
    WS_URL,
    ScenarioError,
    emit,
    left,
    log,
    main,
    Watch,
    frame_objects,
    make_client,
    run_to_end,
    tracing_client,
)

from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    JoinContext,
    LeaveContext,
    PublicationContext,
    SubscribedContext,
    SubscribingContext,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

SCENARIO = ENV.get("RINGCAST_SCENARIO", "presence") or "presence"
try:
    EXPECT_CLIENTS = max(1, int(ENV.get("RINGCAST_EXPECT_CLIENTS", "2") or "2"))
except ValueError:
    EXPECT_CLIENTS = 2

# How long one step (connect, subscribe, a presence call) may take at most.
STEP_S = 8.0
# How long to wait for what another process or the Rust test does (the other client's
# subscribe, the kill, an API call): the rest of the run at most.
WAIT_S = 20.0
# presence: the pause between two presence() calls while the other client is not listed.
POLL_S = 0.05
# disconnect: how long to keep watching for a reconnect attempt after the disconnect.
SETTLE_S = 0.3


class Wire:
    """What went over the WebSocket: connect commands sent, disconnect pushes received."""

    def __init__(self) -> None:
        self.connects_sent = 0
        self.disconnect_pushes = []

    def sent(self, data) -> None:
        for command in frame_objects("out", data, 400):
            if "connect" in command:
                self.connects_sent += 1

    def received(self, data) -> None:
        for frame in frame_objects("in", data, 400):
            push = frame.get("push")
            if isinstance(push, dict) and isinstance(push.get("disconnect"), dict):
                self.disconnect_pushes.append(push["disconnect"])


WIRE = Wire()


TracingClient = tracing_client(WIRE)


def client_info(info) -> dict:
    """{client, user} of a ClientInfo (conn_info/chan_info when present)."""
    out = {"client": info.client, "user": info.user}
    if info.conn_info is not None:
        out["conn_info"] = info.conn_info
    if info.chan_info is not None:
        out["chan_info"] = info.chan_info
    return out


def presence_clients(result) -> dict:
    return {client_id: client_info(info) for client_id, info in result.clients.items()}


class State(Watch):
    """What the event handlers saw, for the scenario to wait on."""

    def __init__(self) -> None:
        super().__init__(STEP_S)
        loop = asyncio.get_running_loop()
        self.connected = loop.create_future()
        self.subscribed = loop.create_future()
        self.disconnected = loop.create_future()
        self.other_left = loop.create_future()
        self.ended = loop.create_future()
        self.expect_end = False  # disconnect/unsubscribe from here on are expected
        self.expect_disconnect = False  # disconnect: the server's disconnect is the test
        self.me = None  # this connection's client id
        self.connecting_after = []  # connecting events once connected

class ClientEvents(ClientEventHandler):
    def __init__(self, state: State) -> None:
        self.state = state

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        log("client connecting: code", ctx.code, "reason", ctx.reason)
        if self.state.connected.done():
            self.state.connecting_after.append({"code": ctx.code, "reason": ctx.reason})
            if not self.state.expect_end:
                self.state.fail(f"connection lost: code {ctx.code} reason {ctx.reason}")

    async def on_connected(self, ctx: ConnectedContext) -> None:
        log("client connected:", ctx.client)
        if not self.state.connected.done():
            self.state.connected.set_result(ctx)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        log("client disconnected: code", ctx.code, "reason", ctx.reason)
        if not self.state.disconnected.done():
            self.state.disconnected.set_result(ctx)
        if not self.state.expect_end and not self.state.expect_disconnect:
            self.state.fail(
                f"client disconnected unexpectedly: code {ctx.code} reason {ctx.reason}"
            )

    async def on_error(self, ctx: ErrorContext) -> None:
        log("client error: code", ctx.code, "error", repr(ctx.error))


class SubEvents(SubscriptionEventHandler):
    def __init__(self, state: State, channel: str) -> None:
        self.state = state
        self.channel = channel

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        log("sub subscribing: code", ctx.code, "reason", ctx.reason)
        if self.state.subscribed.done() and not self.state.expect_end:
            self.state.fail(f"subscription lost: code {ctx.code} reason {ctx.reason}")

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        log("sub subscribed:", ctx.channel)
        if not self.state.subscribed.done():
            self.state.subscribed.set_result(ctx)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        log("sub unsubscribed: code", ctx.code, "reason", ctx.reason)
        if not self.state.expect_end:
            self.state.fail(
                f"subscription unsubscribed unexpectedly: code {ctx.code} reason {ctx.reason}"
            )

    async def on_join(self, ctx: JoinContext) -> None:
        log("join:", ctx.info)
        emit({"step": "join", "channel": self.channel, **client_info(ctx.info)})

    async def on_leave(self, ctx: LeaveContext) -> None:
        log("leave:", ctx.info)
        emit({"step": "leave", "channel": self.channel, **client_info(ctx.info)})
        if ctx.info.client == self.state.me:
            self.state.fail(f"a leave event for this client itself: {client_info(ctx.info)}")
        elif not self.state.other_left.done():
            self.state.other_left.set_result(ctx)

    async def on_publication(self, ctx: PublicationContext) -> None:
        log("publication: data", json.dumps(ctx.pub.data))
        data = ctx.pub.data
        if isinstance(data, dict) and data.get("end") is True and not self.state.ended.done():
            self.state.ended.set_result(ctx)

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        log("sub error: code", ctx.code, "error", repr(ctx.error))


async def connect(state: State, client: Client) -> None:
    try:
        await asyncio.wait_for(client.connect(), left(STEP_S))
    except TimeoutError:
        raise ScenarioError("timeout waiting for connect") from None
    ctx = await state.until(state.connected, "connected")
    state.me = ctx.client
    emit({"step": "connected", "client": ctx.client})


async def scenario_presence(state: State, client: Client) -> dict:
    if not CHANNEL:
        raise ScenarioError("RINGCAST_CHANNEL must be set")
    sub = client.new_subscription(CHANNEL, events=SubEvents(state, CHANNEL), join_leave=True)
    await connect(state, client)
    try:
        await asyncio.wait_for(sub.subscribe(), left(STEP_S))
    except TimeoutError:
        raise ScenarioError("timeout waiting for subscribe") from None
    ctx = await state.until(state.subscribed, "subscribed")
    emit({"step": "subscribed", "channel": ctx.channel})

    # The other client may subscribe later: ask until presence lists them all.
    polls = 0

    async def listed():
        nonlocal polls
        while True:
            polls += 1
            result = await sub.presence(timeout=STEP_S)
            if len(result.clients) >= EXPECT_CLIENTS:
                return result
            await asyncio.sleep(POLL_S)

    task = asyncio.ensure_future(listed())
    try:
        presence = await state.until(task, f"presence() listing {EXPECT_CLIENTS} clients", WAIT_S)
    finally:
        task.cancel()
    emit({"step": "presence", "clients": presence_clients(presence), "polls": polls})
    task = asyncio.ensure_future(sub.presence_stats(timeout=STEP_S))
    stats = await state.until(task, "presence_stats()")
    emit(
        {"step": "presence_stats", "num_clients": stats.num_clients, "num_users": stats.num_users}
    )

    # The Rust test kills the other client's process: its leave must come.
    await state.until(state.other_left, "the leave of another client", WAIT_S)
    task = asyncio.ensure_future(sub.presence(timeout=STEP_S))
    after = await state.until(task, "presence() after the leave")
    emit({"step": "presence_after", "clients": presence_clients(after)})
    await state.until(state.ended, 'the publication {"end": true}', WAIT_S)
    return {"step": "done"}


async def scenario_disconnect(state: State, client: Client) -> dict:
    await connect(state, client)
    state.expect_disconnect = True
    ctx = await state.until(state.disconnected, "the disconnect", WAIT_S)
    state.expect_end = True
    # A reconnect would start at once (a terminal code must not start one): watch a little.
    connects_at_disconnect = WIRE.connects_sent
    await asyncio.sleep(min(SETTLE_S, left(SETTLE_S)))
    emit(
        {
            "step": "disconnected",
            "code": ctx.code,
            "reason": ctx.reason,
            "disconnect_pushes": WIRE.disconnect_pushes,
            "connects_sent": WIRE.connects_sent,
            "connects_after_disconnect": WIRE.connects_sent - connects_at_disconnect,
            "connecting_after": state.connecting_after,
            "state": client.state.value,
        }
    )
    return {"step": "done"}


SCENARIOS = {
    "presence": scenario_presence,
    "disconnect": scenario_disconnect,
}


async def run() -> int:
    if SCENARIO not in SCENARIOS:
        emit({"step": "error", "message": f"unknown RINGCAST_SCENARIO {SCENARIO!r}"})
        return 1
    if not WS_URL or not TOKEN:
        emit({"step": "error", "message": "RINGCAST_WS_URL and RINGCAST_TOKEN must be set"})
        return 1
    state = State()
    client = make_client(ClientEvents(state), "ringcast-py-presence-test", cls=TracingClient)

    def ending() -> None:
        state.expect_end = True

    return await run_to_end(client, SCENARIOS[SCENARIO](state, client), ending)


if __name__ == "__main__":
    main(run)
