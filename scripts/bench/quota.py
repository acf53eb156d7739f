#!/usr/bin/env python3
"""Quota efficiency (SPEC §14): a mock pool of N projects with small per-minute and per-day limits
(examples/quota_mock.rs), a client load above what they allow for a few minutes, through the proxy
with and without learning (--learn-limits true / false; the "day" is the run).

Reports, per run: requests served (200), client-visible 503s, upstream 429s (per minute, per day),
and upstream attempts per served request; and checks the goal of the run with learning:
served = capacity, upstream 429s <= projects x windows, attempts per served request <= 1.05.

Capacity: each project serves at most rpd requests in the run, and at most rpm in any 60 s; with
sliding windows a project's rpm slots come back 60 s after their use, so in D seconds it serves
min(rpd, rpm * ceil(D / 60)) once the load keeps it busy. Windows: ceil(D / 60) minute windows and
the one day, per project.

Stdlib only. Usage:
  quota.py --gkm BIN --mock BIN [--projects 4] [--rpm 30] [--rpd 80] [--seconds 180] [--rate 20]
           [--threads 4] [--only learning|no-learning] [--json OUT] [--log-dir DIR]
Exit status 1 when the run with learning misses a goal.
"""

import argparse
import http.client
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time

import socket

TOKEN = "bench-quota-token"
PATH = "/v1beta/models/gemini-2.5-flash:generateContent"
BODY = b'{"contents":[{"role":"user","parts":[{"text":"Hello"}]}]}'


def free_ports(n):
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for_line(proc, needle, timeout=30):
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline() if proc.stdout else b""
        if not line:
            if proc.poll() is not None:
                break
            continue
        text = line.decode(errors="replace")
        lines.append(text)
        if needle in text:
            return text
    raise RuntimeError(f"no '{needle}' from {proc.args[0]}: {''.join(lines)[-2000:]}")


def get_json(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return json.loads(data)


def client(port, stop, interval, phase, counts, lock):
    conn = None
    # Clients are not in step with each other: each starts at its own phase of the interval.
    next_at = time.time() + phase
    stop.wait(phase)
    while not stop.is_set():
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", PATH, body=BODY,
                         headers={"x-goog-api-key": TOKEN, "content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            status = "error"
            conn = None
        with lock:
            counts[status] = counts.get(status, 0) + 1
        next_at += interval
        pause = next_at - time.time()
        if pause > 0:
            stop.wait(pause)
        else:
            next_at = time.time()


def run(args, learning):
    work = tempfile.mkdtemp(prefix="gkm-quota-")
    keys = [f"AIzaSyQUOTA{i:028d}" for i in range(args.projects)]
    mock_port, gkm_port = free_ports(2)
    procs = []
    log_dir = os.path.join(args.log_dir, "learning" if learning else "no-learning") if args.log_dir else ""
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    try:
        mock = subprocess.Popen([args.mock, "--port", str(mock_port), "--keys", ",".join(keys),
                                 "--rpm", str(args.rpm), "--rpd", str(args.rpd)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(mock)
        wait_for_line(mock, "listening on")
        with open(os.path.join(work, "key.txt"), "w") as f:
            f.write("\n".join(keys) + "\n")
        gkm = subprocess.Popen([args.gkm, "--host", "127.0.0.1", "--port", str(gkm_port), "--token", TOKEN,
                                "--upstream", f"http://127.0.0.1:{mock_port}",
                                "--key-file", os.path.join(work, "key.txt"),
                                "--usage-file", os.path.join(work, "usage.json"),
                                "--log-dir", log_dir, "--log-level", "debug" if log_dir else "warn",
                                "--learn-limits", "true" if learning else "false"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(gkm)
        deadline = time.time() + 20
        while True:
            try:
                get_json(gkm_port, "/healthz")
                break
            except OSError:
                if time.time() > deadline or gkm.poll() is not None:
                    raise RuntimeError("the proxy did not start")
                time.sleep(0.05)
        stop = threading.Event()
        counts, lock = {}, threading.Lock()
        interval = args.threads / args.rate
        threads = [threading.Thread(target=client,
                                    args=(gkm_port, stop, interval, i * interval / args.threads, counts, lock))
                   for i in range(args.threads)]
        started = time.time()
        for t in threads:
            t.start()
        stop.wait(args.seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.time() - started
        stats = get_json(mock_port, "/_stats")
        status = get_json(gkm_port, "/status", {"x-goog-api-key": TOKEN})
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    served = counts.get(200, 0)
    windows = math.ceil(elapsed / 60)
    capacity = args.projects * min(args.rpd, args.rpm * windows)
    upstream_429 = stats["per_minute_429"] + stats["per_day_429"]
    return {
        "learning": learning,
        "seconds": round(elapsed, 1),
        "client_requests": sum(counts.values()),
        "served": served,
        "client_503": counts.get(503, 0),
        "client_other": {str(k): v for k, v in counts.items() if k not in (200, 503)},
        "upstream_requests": stats["requests"],
        "upstream_429_per_minute": stats["per_minute_429"],
        "upstream_429_per_day": stats["per_day_429"],
        "upstream_429": upstream_429,
        "attempts_per_served": round(stats["requests"] / served, 3) if served else None,
        "capacity": capacity,
        "max_429": args.projects * (windows + 1),
        "models": status.get("models", {}),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gkm", required=True)
    ap.add_argument("--mock", required=True)
    ap.add_argument("--projects", type=int, default=4)
    ap.add_argument("--rpm", type=int, default=30)
    ap.add_argument("--rpd", type=int, default=80)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--rate", type=float, default=20, help="client requests per second, all threads")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--only", choices=["learning", "no-learning"])
    ap.add_argument("--json")
    ap.add_argument("--log-dir", help="keep the proxy's log (at debug) in this directory")
    args = ap.parse_args()
    runs = []
    for learning in (True, False):
        if args.only and args.only != ("learning" if learning else "no-learning"):
            continue
        print(f"[quota] {'with' if learning else 'without'} learning: {args.projects} projects, "
              f"rpm {args.rpm}, rpd {args.rpd}, {args.rate:g} requests/s for {args.seconds:g} s",
              file=sys.stderr, flush=True)
        runs.append(run(args, learning))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    print(f"quota efficiency: {args.projects} projects x (rpm {args.rpm}, rpd {args.rpd}), client load "
          f"{args.rate:g} requests/s for {args.seconds:g} s (capacity {runs[0]['capacity']} served, "
          f"at most {runs[0]['max_429']} upstream 429s = projects x windows)")
    print(f"{'run':<18}{'served':>8}{'client 503':>12}{'429/min':>9}{'429/day':>9}{'429 total':>11}"
          f"{'upstream':>10}{'attempts/served':>17}")
    for r in runs:
        name = "with learning" if r["learning"] else "without learning"
        print(f"{name:<18}{r['served']:>8}{r['client_503']:>12}{r['upstream_429_per_minute']:>9}"
              f"{r['upstream_429_per_day']:>9}{r['upstream_429']:>11}{r['upstream_requests']:>10}"
              f"{r['attempts_per_served'] if r['attempts_per_served'] is not None else '-':>17}")
        if r["client_other"]:
            print(f"  other client answers: {r['client_other']}")
    ok = True
    for r in runs:
        if not r["learning"]:
            continue
        goals = [
            ("served = capacity", r["served"] == r["capacity"]),
            ("upstream 429s <= projects x windows", r["upstream_429"] <= r["max_429"]),
            ("attempts per served request <= 1.05",
             r["attempts_per_served"] is not None and r["attempts_per_served"] <= 1.05),
        ]
        for name, met in goals:
            print(f"  goal {name}: {'met' if met else 'MISSED'}")
            ok &= met
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
