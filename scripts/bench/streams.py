#!/usr/bin/env python3
"""Many concurrent SSE streams at once: time to first event, completeness, and the server's memory.

Stdlib only, one thread driving every socket through a selector (no GIL noise between streams):

  1. opens N keep-alive connections to the target, one after the other (not timed);
  2. samples the server's VmRSS (--pid) while it holds those idle connections;
  3. writes the N requests (`POST …:streamGenerateContent?alt=sse`) back to back, or with --ramp-ms spread
     evenly over that many milliseconds; each stream's clock starts just before its own request is written;
  4. reads every stream to its end: status 200, chunked (or length- or close-delimited) body, `data:`
     lines counted; the first one stamps the stream's time to first event;
  5. samples the server's VmRSS, AnonHugePages and thread count the moment the most streams are open at
     once (first event received, end not yet: all N when every first event comes before the first end),
     and its VmRSS every 100 ms until the last stream ends (the peak is kept).

Also counts the kernel's TcpExt ListenOverflows during the run (system-wide): a listener whose accept
queue overflowed dropped SYNs, and each drop costs the connecting side a 1 s (then 2 s…) retransmit.

Prints one JSON object:
{"n": N, "ok": streams complete with --events data lines, "ttfe_median_ms", "ttfe_p90_ms", "ttfe_max_ms",
 "ttfe_min_ms", "last_median_ms", "last_max_ms", "max_open", "all_open": bool, "rss_connected_kb",
 "rss_max_open_kb", "huge_max_open_kb", "threads_max_open", "rss_peak_kb", "hwm_after_kb",
 "listen_overflows", "errors": [first few error strings], ...}
Exit status 1 when a stream failed or came back short.
"""

import argparse
import json
import selectors
import socket
import statistics
import sys
import time

from tool import pct  # scripts/bench/tool.py, next to this script

PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
BODY = b'{"contents":[{"role":"user","parts":[{"text":"Count to eight, slowly."}]}]}'


def proc_status(pid, huge=False):
    """{field: int} of the kB / count lines of /proc/PID/status that we report (and AnonHugePages of
    smaps_rollup with huge); {} without a pid."""
    if not pid:
        return {}
    out = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "Threads"):
                    out[name] = int(value.split()[0])
        if huge:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith("AnonHugePages:"):
                        out["AnonHugePages"] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def listen_overflows():
    """TcpExt ListenOverflows from /proc/net/netstat (system-wide), or None."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as f:
            lines = f.read().splitlines()
        for head, values in zip(lines[::2], lines[1::2]):
            if head.startswith("TcpExt:"):
                return int(dict(zip(head.split(), values.split()))["ListenOverflows"])
    except (OSError, ValueError, KeyError):
        pass
    return None


class Stream:
    def __init__(self, index, sock):
        self.index, self.sock = index, sock
        self.buf = b""
        self.state = "head"  # head, size, data, crlf, trailer, length, close, done, failed
        self.left = 0  # bytes left in the current chunk (data) or body (length)
        self.lines = b""  # body text not yet split into lines
        self.t0 = self.first = self.last = None
        self.events = 0
        self.error = None

    # ---- body text -> data: lines
    def _text(self, data, now):
        self.lines += data
        while b"\n" in self.lines:
            line, _, self.lines = self.lines.partition(b"\n")
            if line.startswith(b"data:"):
                self.events += 1
                if self.first is None:
                    self.first = now

    def _fail(self, message):
        self.state, self.error = "failed", f"stream {self.index}: {message}"

    def _finish(self, now):
        self.state, self.last = "done", now

    # ---- bytes -> HTTP response, as far as they go
    def feed(self, data, now):
        self.buf += data
        while self.state not in ("done", "failed"):
            if self.state == "head":
                if b"\r\n\r\n" not in self.buf:
                    return
                head, _, self.buf = self.buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = lines[0].split(" ", 2)
                if len(status) < 2 or status[1] != "200":
                    self._fail(f"status line {lines[0]!r}")
                    return
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    self.state = "size"
                elif "content-length" in headers:
                    self.state, self.left = "length", int(headers["content-length"])
                else:
                    self.state = "close"
            elif self.state == "size":
                if b"\r\n" not in self.buf:
                    return
                line, _, self.buf = self.buf.partition(b"\r\n")
                try:
                    self.left = int(line.split(b";")[0], 16)
                except ValueError:
                    self._fail(f"bad chunk size line {line[:40]!r}")
                    return
                self.state = "data" if self.left else "trailer"
            elif self.state == "data":
                if not self.buf:
                    return
                part, self.buf = self.buf[: self.left], self.buf[self.left :]
                self.left -= len(part)
                self._text(part, now)
                if self.left == 0:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(self.buf) < 2:
                    return
                if self.buf[:2] != b"\r\n":
                    self._fail("chunk not followed by CRLF")
                    return
                self.buf, self.state = self.buf[2:], "size"
            elif self.state == "trailer":
                if b"\r\n" not in self.buf:
                    return
                line, _, self.buf = self.buf.partition(b"\r\n")
                if not line:  # the blank line after the last chunk (and any trailers)
                    self._finish(now)
            elif self.state == "length":
                part, self.buf = self.buf[: self.left], self.buf[self.left :]
                self.left -= len(part)
                self._text(part, now)
                if self.left == 0:
                    self._finish(now)
                return
            elif self.state == "close":
                self._text(self.buf, now)
                self.buf = b""
                return

    def eof(self, now):
        if self.state == "close":
            self._text(b"\n", now)
            self._finish(now)
        elif self.state not in ("done", "failed"):
            self._fail(f"connection closed by the server in state {self.state}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True, help="sent as x-goog-api-key")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("-n", type=int, default=256)
    ap.add_argument("--events", type=int, required=True, help="data: lines every stream must carry")
    ap.add_argument("--pid", type=int, default=0, help="server process whose VmRSS to sample")
    ap.add_argument("--ramp-ms", type=float, default=0.0, help="spread the requests over this long")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole run")
    args = ap.parse_args()

    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
        f"Content-Type: application/json\r\nx-goog-api-key: {args.token}\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY

    streams = []
    for i in range(args.n):
        sock = socket.create_connection((args.host, args.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        streams.append(Stream(i, sock))
    time.sleep(0.2)  # let the server take every connection in
    connected = proc_status(args.pid)

    sel = selectors.DefaultSelector()
    overflows0 = listen_overflows()
    begin = time.perf_counter()
    deadline = begin + args.timeout
    to_send = 0  # streams[to_send:] have not been written yet
    done_count, streaming, max_open, at_max = 0, 0, 0, {}
    rss_peak, next_sample = 0, begin
    while done_count < args.n:
        now = time.perf_counter()
        if now > deadline:
            for s in streams:
                if s.state not in ("done", "failed"):
                    s._fail(f"not finished after {args.timeout:.0f} s (state {s.state}, {s.events} events)")
            break
        # Requests due by now: all at once without a ramp.
        while to_send < args.n and (
            args.ramp_ms <= 0 or now >= begin + args.ramp_ms / 1000.0 * to_send / args.n
        ):
            s = streams[to_send]
            s.t0 = time.perf_counter()
            s.sock.sendall(request)  # a few hundred bytes: never blocks on an empty socket buffer
            s.sock.setblocking(False)
            sel.register(s.sock, selectors.EVENT_READ, s)
            to_send += 1
            now = time.perf_counter()
        if now >= next_sample:
            rss_peak = max(rss_peak, proc_status(args.pid).get("VmRSS", 0))
            next_sample = now + 0.1
        timeout = 0.05
        if to_send < args.n and args.ramp_ms > 0:
            timeout = max(0.0, min(timeout, begin + args.ramp_ms / 1000.0 * to_send / args.n - now))
        for key, _ in sel.select(timeout=timeout):
            s = key.data
            had_first = s.first is not None
            try:
                data = s.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                s._fail(f"recv: {e}")
                data = None
            now = time.perf_counter()
            if data:
                s.feed(data, now)
            elif data is not None:
                s.eof(now)
            if s.first is not None and not had_first:
                streaming += 1
                if streaming > max_open:
                    max_open = streaming
                    if max_open == args.n or not at_max or max_open % 16 == 0:
                        at_max = proc_status(args.pid, huge=True) | {"open": max_open}
            if s.state in ("done", "failed"):
                if s.first is not None:
                    streaming -= 1
                sel.unregister(s.sock)
                s.sock.close()
                done_count += 1
        if at_max and at_max["open"] != max_open and streaming == max_open:
            at_max = proc_status(args.pid, huge=True) | {"open": max_open}
    for s in streams:
        try:
            s.sock.close()
        except OSError:
            pass
    after = proc_status(args.pid, huge=True)
    overflows1 = listen_overflows()

    ok = [s for s in streams if s.state == "done" and s.events == args.events]
    errors = [s.error for s in streams if s.error]
    errors += [
        f"stream {s.index}: {s.events} data lines, {args.events} expected"
        for s in streams
        if s.state == "done" and s.events != args.events
    ]
    firsts = [(s.first - s.t0) * 1000.0 for s in streams if s.first is not None]
    lasts = [(s.last - s.t0) * 1000.0 for s in streams if s.last is not None]
    out = {
        "n": args.n,
        "ok": len(ok),
        "events": args.events,
        "ttfe_median_ms": statistics.median(firsts) if firsts else None,
        "ttfe_p90_ms": pct(firsts, 90) if firsts else None,
        "ttfe_max_ms": max(firsts) if firsts else None,
        "ttfe_min_ms": min(firsts) if firsts else None,
        "last_median_ms": statistics.median(lasts) if lasts else None,
        "last_max_ms": max(lasts) if lasts else None,
        "ramp_ms": args.ramp_ms,
        "max_open": max_open,
        "all_open": max_open == args.n,
        "rss_connected_kb": connected.get("VmRSS"),
        "threads_connected": connected.get("Threads"),
        "rss_max_open_kb": at_max.get("VmRSS"),
        "huge_max_open_kb": at_max.get("AnonHugePages"),
        "threads_max_open": at_max.get("Threads"),
        "rss_peak_kb": rss_peak or None,
        "rss_after_kb": after.get("VmRSS"),
        "huge_after_kb": after.get("AnonHugePages"),
        "hwm_after_kb": after.get("VmHWM"),
        "listen_overflows": None if None in (overflows0, overflows1) else overflows1 - overflows0,
        "errors_total": len(errors),
        "errors": errors[:5],
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    if len(ok) != args.n:
        print(f"streams: {args.n - len(ok)} of {args.n} streams failed or came back short: "
              + "; ".join(errors[:3]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError) as e:
        print(f"streams: {e}", file=sys.stderr)
        sys.exit(1)
