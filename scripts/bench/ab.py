#!/usr/bin/env python3
"""Compare builds by what they cost per request, not by req/s (stdlib only, plus wrk and perf).

  ab.py BINARY [BINARY ...]        (AB_ROUNDS=3 AB_SECONDS=4 AB_CONNS=4 AB_KEYS=3 by default)

Starts nginx as the fast fake Gemini upstream (as scale.py does), then per round each binary in turn:
a fresh instance with AB_KEYS keys, a wrk pass (-t1 -cAB_CONNS, AB_SECONDS, the plain generate
body) while `perf stat -p PID` counts the instance's task-clock and context switches. Prints, per
run, the requests completed and the CPU time and context switches per request. On a shared machine
these move far less than req/s does (a context switch per request more showed plainly where req/s
was within noise). Hardware counters (instructions) are used when the machine has them.
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale  # noqa: E402

EVENTS = "instructions:u,context-switches,task-clock"


def one(gkm, work, up_port, conns, seconds, nkeys):
    kf = os.path.join(work, "ab-keys.txt")
    with open(kf, "w") as f:
        f.write("\n".join(scale.key(i) for i in range(nkeys)) + "\n")
    usage = os.path.join(work, "ab-usage.json")
    for p in (usage, usage + ".journal"):
        if os.path.exists(p):
            os.remove(p)
    port = scale.free_port()
    proc = subprocess.Popen([gkm, "--host", "127.0.0.1", "--port", str(port), "--upstream",
                             "http://127.0.0.1:%d" % up_port, "--key-file", kf, "--usage-file", usage,
                             "--token", scale.TOKEN, "--log-dir", "", "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if scale.get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.01)
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", EVENTS, "-p", str(proc.pid)],
                                stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)
        out = subprocess.run(["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "-s",
                              os.path.join(scale.HERE, "generate.lua"),
                              "http://127.0.0.1:%d%s" % (port, scale.MODEL_PATH)],
                             capture_output=True, text=True).stdout
        time.sleep(0.2)
        perf.send_signal(2)
        err = perf.communicate()[1]
        found = re.search(r"(\d+) requests in", out)
        requests = int(found.group(1)) if found else 0
        per = {}
        for line in err.splitlines():
            parts = line.split(",")
            if len(parts) > 3:
                try:
                    per[parts[2]] = float(parts[0]) / max(requests, 1)
                except ValueError:
                    pass  # "<not supported>"
        return requests, per
    finally:
        proc.terminate()
        proc.wait()


def main():
    bins = sys.argv[1:]
    if not bins:
        raise SystemExit(__doc__)
    conns = int(os.environ.get("AB_CONNS", "4"))
    seconds = int(os.environ.get("AB_SECONDS", "4"))
    rounds = int(os.environ.get("AB_ROUNDS", "3"))
    nkeys = int(os.environ.get("AB_KEYS", "3"))
    work = os.environ.get("AB_WORK", "/tmp/gkm-ab")
    os.makedirs(work, exist_ok=True)
    up_port, ngx = scale.start_upstream("/usr/sbin/nginx", work)
    try:
        print("binary | round | requests | CPU us/request | context switches/request | instructions/request")
        for r in range(rounds):
            for b in bins:
                requests, per = one(b, work, up_port, conns, seconds, nkeys)
                instructions = per.get("instructions:u")
                print("%s | %d | %d | %.1f | %.2f | %s" % (
                    b, r + 1, requests, per.get("task-clock", 0) * 1000, per.get("context-switches", 0),
                    "%.0f" % instructions if instructions else "n/a"), flush=True)
    finally:
        ngx.terminate()
        ngx.wait(timeout=10)


if __name__ == "__main__":
    main()
