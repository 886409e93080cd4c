"""What the SDK scripts (py_client.py, py_server_subs.py, py_presence.py) share: their
common environment, JSON step lines on stdout and diagnostics on stderr, the overall
deadline, the SDK client they make, and the run itself: the scenario within the deadline,
then its last line (or an error line and exit code 1), a disconnect, and the exit.

The scripts import it from their own directory, which python puts first on sys.path when it
runs a script (`python tests/sdk_py/py_client.py`, from any directory). Importing it checks
that the SDK is installed: without it, it prints {"step":"error",...} and exits 1.
"""

import asyncio
import json
import logging
import os
import sys
import time


def emit(obj) -> None:
    """One JSON step line on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


try:
    from centrifuge import Client
except ImportError as e:  # pragma: no cover - reported as a scenario failure
    emit({"step": "error", "message": f"centrifuge-python is not installed: {e}"})
    sys.exit(1)

ENV = os.environ
WS_URL = ENV.get("RINGCAST_WS_URL", "")
TOKEN = ENV.get("RINGCAST_TOKEN", "")
CHANNEL = ENV.get("RINGCAST_CHANNEL", "")


def _timeout() -> float:
    try:
        value = float(ENV.get("RINGCAST_TIMEOUT_S", "25"))
    except ValueError:
        value = 25.0
    # The whole run stays under 30 s, whatever is asked.
    return min(value, 29.0) if value > 0 else 25.0


TIMEOUT_S = _timeout()
START = time.monotonic()
DEADLINE = START + TIMEOUT_S
# The script's name, for the diagnostics: py_client, py_server_subs, py_presence.
NAME = os.path.splitext(os.path.basename(sys.argv[0]))[0] or "py"


def log(*parts) -> None:
    """A diagnostic line on stderr: `[script ms ms] parts...`."""
    ms = int((time.monotonic() - START) * 1000)
    sys.stderr.write(f"[{NAME} {ms:5} ms] " + " ".join(str(p) for p in parts) + "\n")
    sys.stderr.flush()


def left(bound: float) -> float:
    """Seconds a wait may take: `bound`, or less when the overall deadline is nearer."""
    return max(0.0, min(bound, DEADLINE - time.monotonic()))


class ScenarioError(Exception):
    """A failed expectation: reported as {"step":"error"} and exit code 1."""


class Watch:
    """A scenario's state: a failure an event handler reports (`fail`) ends every wait
    (`until`) at once. Make it inside the running loop."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.failed = asyncio.get_running_loop().create_future()

    def fail(self, message: str) -> None:
        if not self.failed.done():
            self.failed.set_result(message)

    async def until(self, future, what: str, bound: float = 0.0):
        """Waits for `future` (at most `bound`, default the step time), or fails as soon as
        a handler reported a failure."""
        done, _ = await asyncio.wait(
            {future, self.failed},
            timeout=left(bound or self.step_s),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self.failed in done:
            raise ScenarioError(self.failed.result())
        if future in done:
            return future.result()
        raise ScenarioError(f"timeout waiting for {what}")


def frame_objects(direction: str, data, shown: int = 0) -> list:
    """Logs a WebSocket frame (its first `shown` characters; 0: all); returns the JSON objects
    in it (one a line; other lines are skipped)."""
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else data
    if shown and len(text) > shown:
        text_shown = text[:shown] + "..."
    else:
        text_shown = text
    log(f"frame {direction}:", text_shown)
    objects = []
    for line in text.split("\n"):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            objects.append(obj)
    return objects


def tracing_client(wire):
    """The SDK's client class with every WebSocket frame handed to `wire.sent(data)` and
    `wire.received(data)`: the connection its transport opens gets `send` and `recv` wrapped
    (the SDK calls `conn.send(...)`/`conn.recv()`)."""

    class TracingClient(Client):
        async def _open_transport(self):
            conn = await super()._open_transport()
            send, recv = conn.send, conn.recv

            async def traced_send(message, *args, **kwargs):
                wire.sent(message)
                return await send(message, *args, **kwargs)

            async def traced_recv(*args, **kwargs):
                message = await recv(*args, **kwargs)
                wire.received(message)
                return message

            conn.send, conn.recv = traced_send, traced_recv
            return conn

    return TracingClient


def make_client(events, name: str, cls=Client, **options):
    """The SDK client (`cls`) for WS_URL with TOKEN, reporting to `events`."""
    return cls(
        WS_URL,
        events=events,
        token=TOKEN,
        name=name,
        timeout=5.0,
        # Connect directly: no proxy from the environment for a loopback server.
        proxy=None,
        **options,
    )


async def run_to_end(client, scenario, ending) -> int:
    """Awaits `scenario` (a coroutine whose result is the last line) within the overall
    deadline and emits its result, or an error line; then calls `ending()` (a disconnect is
    expected from now on) and disconnects `client`. Returns the exit code."""
    code = 0
    try:
        done = await asyncio.wait_for(scenario, left(TIMEOUT_S))
        ending()
        emit(done)
    except TimeoutError:
        emit({"step": "error", "message": f"overall timeout after {TIMEOUT_S} s"})
        code = 1
    except ScenarioError as e:
        emit({"step": "error", "message": str(e)})
        code = 1
    except Exception as e:  # noqa: BLE001 - any surprise is a failed run
        emit({"step": "error", "message": f"{type(e).__name__}: {e}"})
        code = 1
    ending()
    try:
        await asyncio.wait_for(client.disconnect(), 2.0)
    except Exception as e:  # noqa: BLE001
        log("disconnect failed:", repr(e))
    return code


def main(run) -> None:
    """Runs the coroutine function `run` (it returns the exit code) and exits with its code;
    RINGCAST_DEBUG=1 puts the SDK's debug log on stderr."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if ENV.get("RINGCAST_DEBUG") == "1" else logging.WARNING,
        format="[centrifuge] %(levelname)s %(message)s",
    )
    try:
        code = asyncio.run(run())
    except KeyboardInterrupt:
        code = 1
    sys.stdout.flush()
    # Exit at once: no lingering thread or task keeps the process past its deadline.
    os._exit(code)
