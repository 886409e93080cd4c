#!/usr/bin/env python3
"""Captures real inputs as the fuzz targets' seeds.

Runs a ringcast server with history, puts a recording TCP proxy in front of it, and drives
the official centrifuge JS SDK through the proxy (tests/sdk/js_client.mjs: connect, subscribe,
API publish, client publish). What the SDK and the API client sent becomes the seeds:

  seeds/http_head/         the SDK's upgrade request and the API requests' heads
  seeds/websocket_frames/  the SDK's WebSocket byte stream (first byte: the target's knob)
  seeds/json_command/      each command line the SDK sent, unmasked
  seeds/api_body/          the API request bodies (first byte: the method's index)
  seeds/history_record/    the records of a segment the server wrote
  seeds/connection_token/  a token from `ringcast gentoken`
  seeds/config_file/       tests/fixtures/chat-config.* (first byte: the format's index)

Usage: python3 fuzz/capture_seeds.py target/debug/ringcast   (from the repository root;
needs node and tests/sdk/node_modules, which `cargo test --test sdk_js` installs)
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
API_KEY, SECRET = "seed-api-key", "seed-secret"
METHODS = ["publish", "broadcast", "history", "history_remove", "info", "x"]


def write(target, name, data):
    directory = os.path.join(SEEDS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def start_server(binary, data_dir):
    env = dict(os.environ)
    env.update(
        {
            "RINGCAST_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE": "10",
            "RINGCAST_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL": "300s",
            "RINGCAST_CHANNEL_WITHOUT_NAMESPACE_ALLOW_PUBLISH_FOR_CLIENT": "true",
        }
    )
    server = subprocess.Popen(
        [binary, "serve", "--address", "127.0.0.1", "--port", "0", "--shards", "1",
         "--data-dir", data_dir, "--api-key", API_KEY, "--token-hmac-secret-key", SECRET],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    for line in server.stdout:
        if "listening on" in line:
            port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
            threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
            return server, port
    raise SystemExit("the server did not start")


class Recorder:
    """A proxy that keeps every byte clients send, per connection."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.streams = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.upstream))
            record = bytearray()
            self.streams.append(record)
            threading.Thread(target=self.pump, args=(client, server, record), daemon=True).start()
            threading.Thread(target=self.pump, args=(server, client, None), daemon=True).start()

    @staticmethod
    def pump(source, sink, record):
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if record is not None:
                    record.extend(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def client_frames(stream):
    """Unmasked payloads of the client frames in `stream`."""
    payloads, at = [], 0
    while at + 2 <= len(stream):
        length = stream[at + 1] & 0x7F
        at += 2
        if length == 126:
            length = int.from_bytes(stream[at:at + 2], "big")
            at += 2
        elif length == 127:
            length = int.from_bytes(stream[at:at + 8], "big")
            at += 8
        mask = stream[at:at + 4]
        at += 4
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(stream[at:at + length]))
        payloads.append(payload)
        at += length
    return payloads


def main():
    binary = os.path.abspath(sys.argv[1])
    data_dir = tempfile.mkdtemp(prefix="ringcast-seeds-")
    server, port = start_server(binary, data_dir)
    recorder = Recorder(port)
    token = subprocess.run(
        [binary, "gentoken", "--user", "seed-user", "--token-hmac-secret-key", SECRET],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    write("connection_token", "sdk-user", token.encode())
    env = dict(os.environ)
    env.update(
        {
            "RINGCAST_WS_URL": f"ws://127.0.0.1:{recorder.port}/connection/websocket",
            "RINGCAST_TOKEN": token,
            "RINGCAST_API_URL": f"http://127.0.0.1:{recorder.port}/api",
            "RINGCAST_API_KEY": API_KEY,
            "RINGCAST_CHANNEL": "seeds",
        }
    )
    subprocess.run(["node", os.path.join(ROOT, "tests/sdk/js_client.mjs")], env=env, check=True)
    server.terminate()
    server.wait()
    for i, stream in enumerate(recorder.streams):
        stream = bytes(stream)
        head_end = stream.find(b"\r\n\r\n") + 4
        head, rest = stream[:head_end], stream[head_end:]
        write("http_head", f"sdk-{i}", head)
        if b"Upgrade: websocket" in head or b"upgrade: websocket" in head.lower():
            write("websocket_frames", f"sdk-{i}", b"\xff" + rest)
            for n, payload in enumerate(client_frames(rest)):
                for m, line in enumerate(payload.split(b"\n")):
                    if line.strip():
                        write("json_command", f"sdk-{i}-{n}-{m}", line)
        else:
            method = head.split(b" ")[1].decode().rsplit("/", 1)[-1]
            index = METHODS.index(method) if method in METHODS else len(METHODS) - 1
            write("api_body", f"sdk-{i}-{method}", bytes([index]) + rest)
    partitions = os.path.join(data_dir, "history")
    for partition in sorted(os.listdir(partitions)):
        for name in sorted(os.listdir(os.path.join(partitions, partition))):
            if name.endswith(".seg"):
                with open(os.path.join(partitions, partition, name), "rb") as f:
                    records = f.read()[64:].rstrip(b"\0")
                write("history_record", f"segment-{partition}", records)
    for index, ext in enumerate(["json", "yaml", "toml"]):
        with open(os.path.join(ROOT, "tests", "fixtures", f"chat-config.{ext}"), "rb") as f:
            write("config_file", f"chat-config-{ext}", bytes([index]) + f.read())
    shutil.rmtree(data_dir)


if __name__ == "__main__":
    main()
