#!/usr/bin/env python3
"""Drives `cent` (PyPI), the Python client of Centrifugo's server HTTP API, against a running
ringcast server: its synchronous `cent.Client(api_url, api_key)` and request classes, one call
of each server API method the server has. Run by tests/cent_api.rs from the venv in .venv/,
which connects a raw WebSocket client first (so presence and the user actions act on
something) and checks every reply, and what the raw client got, once the script has ended.

Environment:
  RINGCAST_SCENARIO       calls | batch (default: calls)
  RINGCAST_API_URL        http://127.0.0.1:PORT/api (required; cent posts to API_URL/<method>)
  RINGCAST_API_KEY        the API key (cent sends it as X-API-Key)
  RINGCAST_CHANNEL        a channel with presence and history the raw client is subscribed to
                          (required), e.g. room:cent
  RINGCAST_OTHER_CHANNEL  a second channel with history (required), e.g. room:other: broadcast
                          publishes to both, subscribe and unsubscribe move the user in and out
  RINGCAST_USER           the raw client's user (required)
  RINGCAST_PATTERN        the `channels` pattern (default: room:*)
  RINGCAST_TIMEOUT_S      overall timeout, default 25 (at most 29); each call at most 5 s

Scenarios, each a list of calls in this order (each request with cent's request class):
calls:
  publish         PublishRequest(channel, data={"n": 1}, idempotency_key="cent-key-1")
  publish_repeat  the same request again: the same result, nothing published
  broadcast       BroadcastRequest(channels=[channel, other], data={"n": 2})
  history         HistoryRequest(channel, limit=10)
  presence        PresenceRequest(channel)
  presence_stats  PresenceStatsRequest(channel)
  channels        ChannelsRequest(pattern=PATTERN)
  info            InfoRequest()
  subscribe       SubscribeRequest(user, channel=other, data={"welcome": true}, info={...})
  unsubscribe     UnsubscribeRequest(user, channel=other)
  refresh         RefreshRequest(user, expire_at=now + 600)
  disconnect      DisconnectRequest(user)   (the raw client is closed with 3503)
batch:
  batch           BatchRequest(requests=[PublishRequest(channel, data={"n": 1}),
                  PresenceStatsRequest(channel), HistoryRequest(channel, limit=0)])

Output: one JSON object per line on stdout, one per call:
  {"step":"<call>","method":"<api method>","request":{...payload cent sent...},
   "result":{...the result cent parsed, dumped to JSON...}}
or, where cent raised, {"step":"<call>",...,"error":"<exception>: <message>",
"response":"<the HTTP body cent got>"} (the other calls are still made); then
  {"step":"done"} and exit 0 when every call succeeded, else
  {"step":"error","message":"..."} and exit 1. Diagnostics go to stderr: every HTTP response
(status, URL, body).
"""

import json
import os
import sys
import threading
import time


def emit(obj) -> None:
    """One JSON step line on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def log(*parts) -> None:
    """A diagnostic line on stderr: `[cent_client ms ms] parts...`."""
    ms = int((time.monotonic() - START) * 1000)
    sys.stderr.write(f"[cent_client {ms:5} ms] " + " ".join(str(p) for p in parts) + "\n")
    sys.stderr.flush()


START = time.monotonic()

try:
    import requests
    from cent import (
        BatchRequest,
        BroadcastRequest,
        ChannelsRequest,
        Client,
        DisconnectRequest,
        HistoryRequest,
        InfoRequest,
        PresenceRequest,
        PresenceStatsRequest,
        PublishRequest,
        RefreshRequest,
        SubscribeRequest,
        UnsubscribeRequest,
    )
except ImportError as e:  # pragma: no cover - reported as a failed run
    emit({"step": "error", "message": f"cent is not installed: {e}"})
    sys.exit(1)

ENV = os.environ
SCENARIO = ENV.get("RINGCAST_SCENARIO", "calls") or "calls"
API_URL = ENV.get("RINGCAST_API_URL", "").rstrip("/")
API_KEY = ENV.get("RINGCAST_API_KEY", "")
CHANNEL = ENV.get("RINGCAST_CHANNEL", "")
OTHER_CHANNEL = ENV.get("RINGCAST_OTHER_CHANNEL", "")
USER = ENV.get("RINGCAST_USER", "")
PATTERN = ENV.get("RINGCAST_PATTERN", "room:*") or "room:*"

# How long one call may take at most.
CALL_S = 5.0


def _timeout() -> float:
    try:
        value = float(ENV.get("RINGCAST_TIMEOUT_S", "25"))
    except ValueError:
        value = 25.0
    # The whole run stays under 30 s, whatever is asked.
    return min(value, 29.0) if value > 0 else 25.0


TIMEOUT_S = _timeout()
DEADLINE = START + TIMEOUT_S


def left(bound: float) -> float:
    """Seconds a call may take: `bound`, or less when the overall deadline is nearer."""
    return max(0.1, min(bound, DEADLINE - time.monotonic()))


def overall_timeout() -> None:
    emit({"step": "error", "message": f"overall timeout after {TIMEOUT_S} s"})
    os._exit(1)


def dump(result) -> dict:
    """A cent result as JSON: the pydantic model dumped, a batch's replies each by its own
    class (BatchResult declares them as the base class)."""
    replies = getattr(result, "replies", None)
    if replies is not None:
        return {
            "replies": [
                {"class": type(r).__name__, **r.model_dump(mode="json")} for r in replies
            ]
        }
    return result.model_dump(mode="json")


def scenario_calls(call, client) -> None:
    publish = PublishRequest(channel=CHANNEL, data={"n": 1}, idempotency_key="cent-key-1")
    call("publish", client.publish, publish)
    call("publish_repeat", client.publish, publish)
    call(
        "broadcast",
        client.broadcast,
        BroadcastRequest(channels=[CHANNEL, OTHER_CHANNEL], data={"n": 2}),
    )
    call("history", client.history, HistoryRequest(channel=CHANNEL, limit=10))
    call("presence", client.presence, PresenceRequest(channel=CHANNEL))
    call("presence_stats", client.presence_stats, PresenceStatsRequest(channel=CHANNEL))
    call("channels", client.channels, ChannelsRequest(pattern=PATTERN))
    call("info", client.info, InfoRequest())
    call(
        "subscribe",
        client.subscribe,
        SubscribeRequest(
            user=USER, channel=OTHER_CHANNEL, data={"welcome": True}, info={"via": "cent"}
        ),
    )
    call("unsubscribe", client.unsubscribe, UnsubscribeRequest(user=USER, channel=OTHER_CHANNEL))
    call("refresh", client.refresh, RefreshRequest(user=USER, expire_at=int(time.time()) + 600))
    call("disconnect", client.disconnect, DisconnectRequest(user=USER))


def scenario_batch(call, client) -> None:
    call(
        "batch",
        client.batch,
        BatchRequest(
            requests=[
                PublishRequest(channel=CHANNEL, data={"n": 1}),
                PresenceStatsRequest(channel=CHANNEL),
                HistoryRequest(channel=CHANNEL, limit=0),
            ]
        ),
    )


SCENARIOS = {"calls": scenario_calls, "batch": scenario_batch}


def main() -> int:
    if SCENARIO not in SCENARIOS:
        emit({"step": "error", "message": f"unknown RINGCAST_SCENARIO {SCENARIO!r}"})
        return 1
    if not API_URL or not CHANNEL or not OTHER_CHANNEL or not USER:
        emit(
            {
                "step": "error",
                "message": "RINGCAST_API_URL, RINGCAST_CHANNEL, RINGCAST_OTHER_CHANNEL and "
                "RINGCAST_USER must be set",
            }
        )
        return 1
    timer = threading.Timer(TIMEOUT_S, overall_timeout)
    timer.daemon = True
    timer.start()

    # No proxy from the environment: the server is on loopback.
    session = requests.Session()
    session.trust_env = False
    # The body of the last HTTP response, for the line of a call cent could not parse.
    last = {"body": None}

    def keep_body(response, *args, **kwargs):
        last["body"] = response.text
        log("HTTP", response.status_code, response.request.url, response.text)

    session.hooks["response"].append(keep_body)
    failed = []

    with Client(API_URL, API_KEY, timeout=CALL_S, session=session) as client:

        def call(step: str, send, request) -> None:
            """`send(request)` (a method of the client); one line with what it returned."""
            line = {"step": step, "method": request.api_method, "request": request.api_payload}
            last["body"] = None
            try:
                result = send(request, timeout=left(CALL_S))
                line["result"] = dump(result)
            except Exception as e:  # noqa: BLE001 - cent raises more than CentError
                line["error"] = f"{type(e).__name__}: {e}"
                line["response"] = last["body"]
                failed.append(step)
            emit(line)

        SCENARIOS[SCENARIO](call, client)

    timer.cancel()
    if failed:
        emit({"step": "error", "message": f"cent raised for {', '.join(failed)}"})
        return 1
    emit({"step": "done"})
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
