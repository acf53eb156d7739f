#!/usr/bin/env python3
"""Time to first event of a spaced-out SSE stream, direct to the mock upstream vs through the proxy.

Stdlib only. One keep-alive connection per target (TCP_NODELAY), requests interleaved direct/proxied so
that machine noise hits both alike. The clock starts just before the request is written and stops when the
first complete `data:` line has been decoded from the chunked body; the rest of the stream is then read to
its end (so the connection can be reused), and the time of the last event is kept too: a proxy that
buffered the stream would show a first event as late as the last.

With --openai-port, a third target is interleaved with the other two: the proxy's OpenAI route
(`POST /v1/chat/completions`, `"stream": true`, `Authorization: Bearer`), whose first `data:` line is the
first translated chunk (the proxy writes nothing before the first upstream event has been translated).

Prints one JSON object:
{"direct": {"median_ms":..., "p90_ms":..., "last_median_ms":..., "events":..., "reconnects":...},
 "proxied": {...}, "openai": {...} (with --openai-port), "n": N}
"""

import argparse
import json
import socket
import statistics
import sys
import time

from tool import pct  # scripts/bench/tool.py, next to this script

PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
BODY = b'{"contents":[{"role":"user","parts":[{"text":"Count to three, slowly."}]}]}'
OPENAI_PATH = "/v1/chat/completions"
OPENAI_BODY = (
    b'{"model":"gemini-2.5-flash","stream":true,'
    b'"messages":[{"role":"user","content":"Count to three, slowly."}]}'
)


class StreamError(Exception):
    pass


class Target:
    def __init__(self, name, host, port, key, timeout, openai=False):
        self.name, self.host, self.port, self.key, self.timeout = name, host, port, key, timeout
        self.openai = openai
        self.sock = None
        self.buf = b""
        self.reconnects = -1  # the first connect is not a reconnect

    def connect(self):
        self.close()
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        self.reconnects += 1

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise StreamError("connection closed by peer")
        self.buf += data

    def _read_until(self, sep):
        while sep not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(sep)
        return head

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def request(self):
        """One streamed request; returns (ms to first data line, ms to end, data lines seen)."""
        if self.sock is None:
            self.connect()
        path, body, auth = PATH, BODY, f"x-goog-api-key: {self.key}"
        if self.openai:
            path, body, auth = OPENAI_PATH, OPENAI_BODY, f"Authorization: Bearer {self.key}"
        req = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\n{auth}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        t0 = time.perf_counter()
        try:
            self.sock.sendall(req)
            head = self._read_until(b"\r\n\r\n").decode("latin-1")
        except (OSError, StreamError):
            # A kept-alive connection the server had closed: retry once on a fresh one.
            self.connect()
            t0 = time.perf_counter()
            self.sock.sendall(req)
            head = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "200":
            raise StreamError(f"{self.name}: unexpected status line {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get("connection", "").lower() != "close"

        text, first, events = b"", None, 0
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")  # no trailers expected: the blank line
                    break
                text += self._read_exact(size)
                self._read_exact(2)
                first, events, text = _scan(text, first, events, t0)
        elif "content-length" in headers:
            text = self._read_exact(int(headers["content-length"]))
            first, events, text = _scan(text, first, events, t0)
        else:  # read to close
            try:
                while True:
                    self._fill()
            except StreamError:
                pass
            text, self.buf = self.buf, b""
            first, events, text = _scan(text, first, events, t0)
            keep_alive = False
        end = (time.perf_counter() - t0) * 1000.0
        if not keep_alive:
            self.close()
        if first is None:
            raise StreamError(f"{self.name}: stream ended without a data: line")
        return first, end, events


def _scan(text, first, events, t0):
    """Counts complete `data:` lines in text; stamps the first one. Returns the unconsumed tail."""
    while b"\n" in text:
        line, _, text = text.partition(b"\n")
        if line.startswith(b"data:"):
            events += 1
            if first is None:
                first = (time.perf_counter() - t0) * 1000.0
    return first, events, text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--direct-port", type=int, required=True)
    ap.add_argument("--direct-key", required=True)
    ap.add_argument("--proxy-port", type=int, required=True)
    ap.add_argument("--proxy-token", required=True)
    ap.add_argument("--openai-port", type=int, help="also time the OpenAI route of the proxy on this port")
    ap.add_argument("--openai-token", help="bearer token for --openai-port (default: --proxy-token)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()

    targets = {
        "direct": Target("direct", args.host, args.direct_port, args.direct_key, args.timeout),
        "proxied": Target("proxied", args.host, args.proxy_port, args.proxy_token, args.timeout),
    }
    if args.openai_port:
        token = args.openai_token or args.proxy_token
        targets["openai"] = Target("openai", args.host, args.openai_port, token, args.timeout, openai=True)
    samples = {name: [] for name in targets}
    for name, target in targets.items():  # warm-up, not counted
        target.request()
    for _ in range(args.n):
        for name, target in targets.items():
            samples[name].append(target.request())

    out = {"n": args.n}
    for name, rows in samples.items():
        firsts = [r[0] for r in rows]
        lasts = [r[1] for r in rows]
        out[name] = {
            "median_ms": statistics.median(firsts),
            "p90_ms": pct(firsts, 90),
            "last_median_ms": statistics.median(lasts),
            "events_min": min(r[2] for r in rows),
            "reconnects": targets[name].reconnects,
        }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    try:
        main()
    except (OSError, StreamError, ValueError) as e:
        print(f"ttfe: {e}", file=sys.stderr)
        sys.exit(1)
