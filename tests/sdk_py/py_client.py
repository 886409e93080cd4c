#!/usr/bin/env python3
"""Drives the official Python SDK (`centrifuge-python` from PyPI, asyncio over `websockets`)
against a running ringcast server. Run by tests/sdk_python.rs from the venv in .venv/.

Environment:
  RINGCAST_SCENARIO                basic | sub_token | sub_denied (default: basic)
  RINGCAST_WS_URL                  ws://127.0.0.1:PORT/connection/websocket (required)
  RINGCAST_TOKEN                   connection JWT (optional, may be empty)
  RINGCAST_API_URL                 http://127.0.0.1:PORT/api (basic, sub_token)
  RINGCAST_API_KEY                 value of the X-API-Key header (may be empty)
  RINGCAST_CHANNEL                 channel to subscribe to (required)
  RINGCAST_USER                    user for subscription tokens (sub_token)
  RINGCAST_SUBTOKEN_CMD            command printing a subscription token (sub_token), split
                                   like a shell; `--user USER --channel CHANNEL` is appended
  RINGCAST_EXPECT_REFRESH_AFTER_S  sub_token: stay subscribed this many seconds between the
                                   two publications (the SDK must refresh the token meanwhile)
  RINGCAST_TIMEOUT_S               overall timeout, default 25 (at most 29)
  RINGCAST_DEBUG                   "1": the SDK's debug log on stderr

Scenarios:
  basic       connect, subscribe (static permissions), receive a publication sent through
              POST {API_URL}/publish, disconnect.
  sub_token   connect, subscribe with the SDK's get_token callback (which runs
              RINGCAST_SUBTOKEN_CMD), receive an API publication, optionally stay subscribed
              RINGCAST_EXPECT_REFRESH_AFTER_S seconds, receive a second API publication.
  sub_denied  subscribe without a token; the subscription must end unsubscribed with 103.

Output: one JSON object per line on stdout, e.g.
  {"step":"connected","client":"..."}
  {"step":"subscribed","channel":"...","recoverable":false,"positioned":false,"offset":null}
  {"step":"api_publish","n":1,"reply":{...}}
  {"step":"api_publication","n":1,"offset":0}
  {"step":"get_token","call":1,"channel":"..."}                          (sub_token)
  {"step":"stayed_subscribed","seconds":5,"get_token_calls":3}           (sub_token)
  {"step":"unsubscribed","code":103,"reason":"permission denied"}        (sub_denied)
  {"step":"done"}   or, for sub_token, {"step":"done","get_token_calls":N,"resubscribes":0}
On failure: {"step":"error","message":"..."} and exit code 1. Success: exit 0.
Diagnostics (SDK events with their codes) go to stderr.
"""

import asyncio
import json
import shlex
import urllib.error
import urllib.request

# The harness first: it reports a missing SDK as an error line.
from harness import (
    CHANNEL,
    ENV,
    WS_URL,
    ScenarioError,
    emit,
    left,
    log,
    main,
    Watch,
    make_client,
    run_to_end,
)

import centrifuge
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    PublicationContext,
    SubscribedContext,
    SubscribingContext,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

SCENARIO = ENV.get("RINGCAST_SCENARIO", "basic") or "basic"
API_URL = ENV.get("RINGCAST_API_URL", "").rstrip("/")
API_KEY = ENV.get("RINGCAST_API_KEY", "")
USER = ENV.get("RINGCAST_USER", "")
SUBTOKEN_CMD = ENV.get("RINGCAST_SUBTOKEN_CMD", "")
REFRESH_AFTER_S = float(ENV.get("RINGCAST_EXPECT_REFRESH_AFTER_S", "0") or "0")

# How long one step (connect, subscribe, a publication, a token) may take at most.
STEP_S = 10.0
# How long the subscription token command may run.
SUBTOKEN_CMD_S = 5.0


async def wait(awaitable, what: str, bound: float = STEP_S):
    """Waits for `awaitable`, at most `bound` seconds (and never past the overall deadline)."""
    try:
        return await asyncio.wait_for(awaitable, left(bound))
    except TimeoutError:
        raise ScenarioError(f"timeout waiting for {what}") from None


class State(Watch):
    """What the event handlers saw, for the scenario to wait on."""

    def __init__(self) -> None:
        super().__init__(STEP_S)
        loop = asyncio.get_running_loop()
        self.connected = loop.create_future()
        self.subscribed = loop.create_future()
        self.unsubscribed = loop.create_future()
        self.expect_end = False  # disconnect/unsubscribe from here on are expected
        self.expect_unsubscribe = False  # sub_denied: unsubscribed is the expected end
        self.subscribed_count = 0
        self.publications = []  # PublicationContext.pub, in order
        self.publication_arrived = asyncio.Event()
        self.get_token_calls = 0
        self.sub_errors = []

    async def publication(self, n: int):
        """The publication whose data is {"n": n} (it may have arrived already)."""

        async def find():
            while True:
                for pub in self.publications:
                    if isinstance(pub.data, dict) and pub.data.get("n") == n:
                        return pub
                self.publication_arrived.clear()
                await self.publication_arrived.wait()

        task = asyncio.ensure_future(find())
        try:
            return await self.until(task, f"publication n={n}")
        finally:
            task.cancel()


class ClientEvents(ClientEventHandler):
    def __init__(self, state: State) -> None:
        self.state = state

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        log("client connecting: code", ctx.code, "reason", ctx.reason)
        if self.state.connected.done() and not self.state.expect_end:
            self.state.fail(f"connection lost: code {ctx.code} reason {ctx.reason}")

    async def on_connected(self, ctx: ConnectedContext) -> None:
        log("client connected:", ctx.client, "version", repr(ctx.version))
        if not self.state.connected.done():
            self.state.connected.set_result(ctx)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        log("client disconnected: code", ctx.code, "reason", ctx.reason)
        if not self.state.expect_end:
            self.state.fail(
                f"client disconnected unexpectedly: code {ctx.code} reason {ctx.reason}"
            )

    async def on_error(self, ctx: ErrorContext) -> None:
        log("client error: code", ctx.code, "error", repr(ctx.error))


class SubEvents(SubscriptionEventHandler):
    def __init__(self, state: State) -> None:
        self.state = state

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        log("sub subscribing: code", ctx.code, "reason", ctx.reason)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        log(
            "sub subscribed:",
            ctx.channel,
            "recoverable",
            ctx.recoverable,
            "positioned",
            ctx.positioned,
            "position",
            ctx.stream_position,
        )
        self.state.subscribed_count += 1
        if not self.state.subscribed.done():
            self.state.subscribed.set_result(ctx)
        if self.state.expect_unsubscribe:
            self.state.fail("subscribed, but the subscription was expected to be denied")

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        log("sub unsubscribed: code", ctx.code, "reason", ctx.reason)
        if not self.state.unsubscribed.done():
            self.state.unsubscribed.set_result(ctx)
        if not self.state.expect_end and not self.state.expect_unsubscribe:
            self.state.fail(
                f"subscription unsubscribed unexpectedly: code {ctx.code} reason {ctx.reason}"
            )

    async def on_publication(self, ctx: PublicationContext) -> None:
        log("publication: offset", ctx.pub.offset, "data", json.dumps(ctx.pub.data))
        self.state.publications.append(ctx.pub)
        self.state.publication_arrived.set()

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        log("sub error: code", ctx.code, "error", repr(ctx.error))
        self.state.sub_errors.append(ctx)


def _api_publish_blocking(n: int):
    body = json.dumps({"channel": CHANNEL, "data": {"n": n}}).encode()
    headers = {"Content-Type": "application/json"}
    if API_KEY:
        headers["X-API-Key"] = API_KEY
    request = urllib.request.Request(
        f"{API_URL}/publish", data=body, headers=headers, method="POST"
    )
    # No proxy from the environment: the server is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=max(0.1, left(5.0))) as response:
            text = response.read().decode("utf-8", "replace")
            status = response.status
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        raise ScenarioError(f"api publish: HTTP {e.code}: {text}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ScenarioError(f"api publish: {e}") from None
    log("api publish response:", status, text)
    try:
        reply = json.loads(text)
    except ValueError:
        raise ScenarioError(f"api publish: response is not JSON: {text}") from None
    if isinstance(reply, dict) and reply.get("error"):
        raise ScenarioError(f"api publish: error {json.dumps(reply['error'])}")
    return reply


async def api_publish(n: int):
    """POST /publish {"channel": CHANNEL, "data": {"n": n}} (in a thread: urllib blocks)."""
    reply = await wait(asyncio.to_thread(_api_publish_blocking, n), f"api publish n={n}")
    emit({"step": "api_publish", "n": n, "reply": reply})
    return reply


async def publish_and_receive(state: State, n: int) -> None:
    await api_publish(n)
    pub = await state.publication(n)
    emit({"step": "api_publication", "n": n, "offset": pub.offset})


async def connect(state: State, client: Client) -> None:
    await wait(client.connect(), "connect")
    ctx = await state.until(state.connected, "connected")
    emit({"step": "connected", "client": ctx.client})


async def subscribed(state: State) -> None:
    ctx = await state.until(state.subscribed, "subscribed")
    position = ctx.stream_position
    emit(
        {
            "step": "subscribed",
            "channel": ctx.channel,
            "recoverable": ctx.recoverable,
            "positioned": ctx.positioned,
            "offset": position.offset if position else None,
        }
    )


async def scenario_basic(state: State, client: Client) -> dict:
    if not API_URL:
        raise ScenarioError("RINGCAST_API_URL must be set")
    sub = client.new_subscription(CHANNEL, events=SubEvents(state))
    await connect(state, client)
    await wait(sub.subscribe(), "subscribe")
    await subscribed(state)
    await publish_and_receive(state, 1)
    return {"step": "done"}


def token_getter(state: State):
    """The SDK's get_token for a subscription: `async def get_token(channel) -> str`. A
    failure to get a token ends the scenario (the SDK would retry with backoff)."""
    argv = shlex.split(SUBTOKEN_CMD)

    async def get_token(channel: str) -> str:
        state.get_token_calls += 1
        call = state.get_token_calls
        emit({"step": "get_token", "call": call, "channel": channel})
        if channel != CHANNEL:
            state.fail(f"get_token called for {channel!r}, not {CHANNEL!r}")
        command = argv + ["--user", USER, "--channel", channel]
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            state.fail(f"get_token: cannot run {command}: {e}")
            raise
        try:
            out, err = await asyncio.wait_for(process.communicate(), SUBTOKEN_CMD_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            state.fail(f"get_token: {command} ran over {SUBTOKEN_CMD_S} s")
            raise
        token = out.decode("utf-8", "replace").strip()
        if process.returncode != 0 or not token:
            message = (
                f"get_token: {command} exited with {process.returncode}, "
                f"stdout {token!r}, stderr {err.decode('utf-8', 'replace').strip()!r}"
            )
            state.fail(message)
            raise RuntimeError(message)
        log("get_token call", call, "for", channel, "->", token[:16] + "...")
        return token

    return get_token


async def scenario_sub_token(state: State, client: Client) -> dict:
    if not API_URL or not SUBTOKEN_CMD or not USER:
        raise ScenarioError("RINGCAST_API_URL, RINGCAST_SUBTOKEN_CMD and RINGCAST_USER must be set")
    sub = client.new_subscription(CHANNEL, events=SubEvents(state), get_token=token_getter(state))
    await connect(state, client)
    await wait(sub.subscribe(), "subscribe")
    await subscribed(state)
    await publish_and_receive(state, 1)
    if REFRESH_AFTER_S > 0:
        # Stay subscribed: a lost subscription or connection fails the wait at once.
        stay = asyncio.ensure_future(asyncio.sleep(REFRESH_AFTER_S))
        try:
            await state.until(stay, "the stay", bound=REFRESH_AFTER_S + 1.0)
        finally:
            stay.cancel()
        if sub.state != centrifuge.SubscriptionState.SUBSCRIBED:
            raise ScenarioError(f"subscription is {sub.state.value} after the stay")
        emit(
            {
                "step": "stayed_subscribed",
                "seconds": int(REFRESH_AFTER_S)
                if REFRESH_AFTER_S.is_integer()
                else REFRESH_AFTER_S,
                "get_token_calls": state.get_token_calls,
            }
        )
    await publish_and_receive(state, 2)
    return {
        "step": "done",
        "get_token_calls": state.get_token_calls,
        # Subscribed events after the first: the subscription was lost and made again.
        "resubscribes": state.subscribed_count - 1,
        "sub_errors": [f"{e.code}: {e.error}" for e in state.sub_errors],
    }


async def scenario_sub_denied(state: State, client: Client) -> dict:
    state.expect_unsubscribe = True
    sub = client.new_subscription(CHANNEL, events=SubEvents(state))
    await connect(state, client)
    await wait(sub.subscribe(), "subscribe")
    ctx = await state.until(state.unsubscribed, "unsubscribed")
    emit({"step": "unsubscribed", "code": ctx.code, "reason": ctx.reason})
    if ctx.code != 103:
        raise ScenarioError(f"expected unsubscribed with code 103, got {ctx.code} ({ctx.reason})")
    return {"step": "done"}


SCENARIOS = {
    "basic": scenario_basic,
    "sub_token": scenario_sub_token,
    "sub_denied": scenario_sub_denied,
}


async def run() -> int:
    if SCENARIO not in SCENARIOS:
        emit({"step": "error", "message": f"unknown RINGCAST_SCENARIO {SCENARIO!r}"})
        return 1
    if not WS_URL or not CHANNEL:
        emit({"step": "error", "message": "RINGCAST_WS_URL and RINGCAST_CHANNEL must be set"})
        return 1
    state = State()
    client = make_client(ClientEvents(state), "ringcast-py-sdk-test")

    def ending() -> None:
        state.expect_end = True

    return await run_to_end(client, SCENARIOS[SCENARIO](state, client), ending)


if __name__ == "__main__":
    main(run)
