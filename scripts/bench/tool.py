#!/usr/bin/env python3
"""Small helpers for scripts/bench.sh (stdlib only).

  tool.py free-ports N                      print N free TCP ports on 127.0.0.1, one per line
  tool.py render TEMPLATE OUT NAME=VALUE..  copy TEMPLATE to OUT replacing every @NAME@ by VALUE
  tool.py wrk FILE                          parse wrk --latency output: "rps p50_ms p99_ms non2xx socket_errors requests"
  tool.py cpu PID                           CPU seconds used so far by PID (all threads) and its children
  tool.py report RESULTS TTFE_JSON          print the final table and ratios from the collected results
  tool.py check-openai ANSWER EXPECTED      is ANSWER the OpenAI chat completion of the Gemini answer EXPECTED
  tool.py check-anthropic ANSWER EXPECTED   is ANSWER the Anthropic message of the Gemini answer EXPECTED
  tool.py check-responses ANSWER EXPECTED   is ANSWER the Responses `response` of the Gemini answer EXPECTED
  tool.py report-streams IDLE_RSS IDLE_THREADS AFTER_RSS AFTER_THREADS NAME=JSON NAME=JSON...
                                            the concurrent-streams section (streams.py outputs, direct first)
  tool.py report-workers RESULTS            the throughput-by-worker-count section
  tool.py report-openai RESULTS TTFE_JSON   the OpenAI-route section: table, translation cost, streamed TTFE
  tool.py report-resources RESULTS          the resources section: plain, unknown file, pinned cache
"""

import json
import os
import re
import socket
import statistics
import sys


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        for s in socks:
            print(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()


def render(template, out, pairs):
    with open(template, encoding="utf-8") as f:
        text = f.read()
    for pair in pairs:
        name, _, value = pair.partition("=")
        text = text.replace(f"@{name}@", value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        sys.exit(f"render: {template}: unfilled placeholders {sorted(set(left))}")
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def to_ms(value):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", value)
    if not m:
        raise ValueError(f"unparseable duration {value!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    total = re.search(r"^\s+(\d+) requests in", text, re.M)
    if not (rps and p50 and p99 and total):
        sys.exit(f"wrk: could not parse {path}:\n{text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    sock_errors = sum(int(g) for g in sock.groups()) if sock else 0
    print(
        f"{float(rps.group(1)):.1f} {to_ms(p50.group(1)):.4f} {to_ms(p99.group(1)):.4f} "
        f"{int(non2xx.group(1)) if non2xx else 0} {sock_errors} {total.group(1)}"
    )


def cpu_seconds(*pids):
    """utime+stime of each pid and of its direct children (nginx: master and workers), in seconds, summed."""
    print(f"{sum(cpu_ticks(p) for p in pids) / os.sysconf('SC_CLK_TCK'):.2f}")


def cpu_ticks(pid):
    """utime+stime of pid and of its direct children, in clock ticks."""
    def times(p):
        with open(f"/proc/{p}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12]), int(fields[1])  # utime+stime, ppid

    total = times(pid)[0]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            try:
                ticks, ppid = times(entry)
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                total += ticks
    return total


def pct(values, p):
    """The p-th percentile of values (nearest rank); shared with streams.py and ttfe.py."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # nearest rank
    return ordered[int(rank) - 1]


def read_results(results_path):
    """{(pass, target): row} and the order of the rows, from run_wrk's "record" lines. A pass run
    several times (rounds) gives one row: the median of each figure, the sum of the counts, and
    every round's figures in row["rounds"] (in the order they ran)."""
    runs = {}
    order = []
    with open(results_path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            pass_, target, conns, rps, p50, p99, non2xx, sockerr, total, cpu = line.split()
            run = dict(
                rps=float(rps), p50=float(p50), p99=float(p99), non2xx=int(non2xx), sockerr=int(sockerr),
                total=int(total), cpu=float(cpu), cycle=int(conns) * 1000.0 / float(rps) if float(rps) else 0.0,
            )
            if (pass_, target) not in runs:
                runs[(pass_, target)] = []
                order.append((pass_, target))
            runs[(pass_, target)].append(run)
    rows = {}
    for key, rounds in runs.items():
        row = {f: statistics.median([r[f] for r in rounds]) for f in ("rps", "p50", "p99", "cpu", "cycle")}
        row.update({f: sum(r[f] for r in rounds) for f in ("non2xx", "sockerr", "total")})
        row["rounds"] = rounds
        rows[key] = row
    return rows, order


def print_rows(rows, order):
    print(f"{'pass':<12} {'target':<13} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'cycle ms':>9} "
          f"{'cpu us/req':>10} {'non-2xx':>8} {'sock-err':>8}")
    for key in order:
        r = rows[key]
        print(f"{key[0]:<12} {key[1]:<13} {r['rps']:>10.0f} {r['p50']:>9.3f} {r['p99']:>9.3f} {r['cycle']:>9.3f} "
              f"{r['cpu']:>10.1f} {r['non2xx']:>8} {r['sockerr']:>8}")


def report(results_path, ttfe_path):
    rows, order = read_results(results_path)
    print_rows(rows, order)
    rounds = max(len(r["rounds"]) for r in rows.values())
    if rounds > 1:
        print(f"(each figure: the median of {rounds} rounds; the rounds ran the targets in turn, so that all of them "
              "saw the same machine)")
    print("(p50/p99: wrk's per-request latency, timed from the moment wrk writes the request; cycle ms: "
          "connections / req/s,\n the mean time per request on each "
          "connection (Little's law), which also counts gaps between requests that wrk's timer misses;\n cpu us/req: CPU time of the target's own processes, all threads, "
          "per completed request: the upstream nginx for direct, the proxy alone for the others)")

    def get(pass_, target, field):
        r = rows.get((pass_, target))
        return None if r is None else r[field]

    def verdict(ok):
        return "ok" if ok else "MISSED"

    parts = []
    g, n = get("saturating", "gkm-proxy", "rps"), get("saturating", "nginx-proxy", "rps")
    if g is not None and n:
        per_round = [
            a["rps"] / b["rps"]
            for a, b in zip(rows[("saturating", "gkm-proxy")]["rounds"], rows[("saturating", "nginx-proxy")]["rounds"])
            if b["rps"]
        ]
        each = f"; by round: {', '.join(f'{x:.2f}' for x in per_round)}" if len(per_round) > 1 else ""
        parts.append(f"gkm/nginx saturating throughput = {g / n:.2f} (goal >= 0.5: {verdict(g / n >= 0.5)}{each})")
    d50, g50, n50 = (get("light", t, "p50") for t in ("direct", "gkm-proxy", "nginx-proxy"))
    d99, g99, n99 = (get("light", t, "p99") for t in ("direct", "gkm-proxy", "nginx-proxy"))
    if None not in (d50, g50, d99, g99):
        a50, a99 = g50 - d50, g99 - d99
        extra50 = f"; nginx adds {n50 - d50:.3f}" if n50 is not None else ""
        extra99 = f"; nginx adds {n99 - d99:.2f}" if n99 is not None else ""
        parts.append(f"added p50 over direct at light load = {a50:.3f} ms (goal < 0.1: {verdict(a50 < 0.1)}{extra50})")
        parts.append(f"added p99 = {a99:.2f} ms (goal < 1: {verdict(a99 < 1)}{extra99})")
        dc, gc, nc = (get("light", t, "cycle") for t in ("direct", "gkm-proxy", "nginx-proxy"))
        extrac = f"; nginx adds {nc - dc:.3f}" if nc is not None else ""
        parts.append(f"added mean cycle at light load = {gc - dc:.3f} ms (no goal{extrac})")
    try:
        with open(ttfe_path, encoding="utf-8") as f:
            t = json.load(f)
        dm, pm = t["direct"]["median_ms"], t["proxied"]["median_ms"]
        parts.append(
            f"TTFE (n={t['n']}) direct median {dm:.2f} ms p90 {t['direct']['p90_ms']:.2f} ms, "
            f"proxied median {pm:.2f} ms p90 {t['proxied']['p90_ms']:.2f} ms, "
            f"diff {pm - dm:.2f} ms (goal < 5: {verdict(pm - dm < 5)}); "
            f"last event median direct {t['direct']['last_median_ms']:.0f} ms, "
            f"proxied {t['proxied']['last_median_ms']:.0f} ms"
        )
    except (OSError, ValueError, KeyError) as e:
        parts.append(f"TTFE: no result ({e})")
    print("ratios: " + ";\n        ".join(parts))


def check_translated(answer_path, expected_path, surface, kind_of, text_of, kind_wanted):
    """Exit 1 with a reason unless the answer is a `kind_wanted` object (read by `kind_of`) whose
    text (read by `text_of`) is the Gemini answer's."""
    with open(expected_path, encoding="utf-8") as f:
        expected = json.load(f)
    want = "".join(p.get("text", "") for p in expected["candidates"][0]["content"]["parts"])
    try:
        with open(answer_path, encoding="utf-8") as f:
            got = json.load(f)
        text, kind = text_of(got), kind_of(got)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        sys.exit(f"not an {surface} answer ({e!r})")
    if kind != kind_wanted:
        sys.exit(f"{surface} answer is {kind!r}, not {kind_wanted!r}")
    if text != want:
        sys.exit(f"content {text[:80]!r} is not the upstream's text {want[:80]!r}")


def check_openai(answer_path, expected_path):
    """The answer is a chat completion carrying the Gemini answer's text."""
    check_translated(answer_path, expected_path, "OpenAI", lambda g: g.get("object"),
                     lambda g: g["choices"][0]["message"]["content"], "chat.completion")


def check_anthropic(answer_path, expected_path):
    """The answer is an Anthropic message carrying the Gemini answer's text."""
    check_translated(answer_path, expected_path, "Anthropic", lambda g: g.get("type"),
                     lambda g: "".join(b.get("text", "") for b in g["content"] if b.get("type") == "text"),
                     "message")


def check_responses(answer_path, expected_path):
    """The answer is a Responses `response` carrying the Gemini answer's text."""
    check_translated(answer_path, expected_path, "Responses", lambda g: g.get("object"),
                     lambda g: "".join(c.get("text", "") for i in g["output"] if i.get("type") == "message"
                                       for c in i["content"]), "response")


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"_error": str(e)}


def ms(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def report_streams(idle_rss, idle_threads, after_rss, after_threads, runs_args):
    """runs_args: NAME=JSON of streams.py runs, the first one direct, the others through the proxy."""
    runs = {}
    for arg in runs_args:
        name, _, path = arg.partition("=")
        runs[name] = load_json(path)

    def kb(v):
        return "?" if v in (None, "?") else f"{int(v) / 1024:.1f} MiB"

    print(f"{'target':<17} {'complete':>9} {'TTFE p50 ms':>11} {'p90 ms':>8} {'max ms':>8} {'min ms':>8} "
          f"{'end p50 ms':>10} {'end max ms':>10} {'max open':>8}")
    for name, r in runs.items():
        if "_error" in r:
            print(f"{name:<17} no result ({r['_error']})")
            continue
        print(f"{name:<17} {r['ok']:>4}/{r['n']:<4} {ms(r['ttfe_median_ms']):>11} {ms(r['ttfe_p90_ms']):>8} "
              f"{ms(r['ttfe_max_ms']):>8} {ms(r['ttfe_min_ms']):>8} {ms(r['last_median_ms'], 0):>10} "
              f"{ms(r['last_max_ms'], 0):>10} {r['max_open']:>8}")
    print("(each run opens its connections first, untimed, then writes every request back to back; a stream's clock "
          "starts just before\n its own request; complete = status 200, the whole chunked body and every event; "
          "end = the stream's last byte; max open =\n the most streams between their first event and their end "
          "at one time; cold = a fresh proxy instance, warm = the same\n instance right after, its connection "
          "threads and upstream connections still there)")
    names = list(runs)
    ok = [r for r in runs.values() if "_error" not in r]
    complete = bool(ok) and len(ok) == len(runs) and all(r["ok"] == r["n"] for r in ok)
    notes = [f"every stream complete: {'yes' if complete else 'NO'}"]
    d = runs[names[0]]
    for name in names[1:]:
        p = runs[name]
        if "_error" in d or "_error" in p or None in (d["ttfe_median_ms"], p["ttfe_median_ms"]):
            continue
        notes.append(f"{name} adds TTFE p50 {p['ttfe_median_ms'] - d['ttfe_median_ms']:+.1f} ms, "
                     f"p90 {p['ttfe_p90_ms'] - d['ttfe_p90_ms']:+.1f} ms, max {p['ttfe_max_ms'] - d['ttfe_max_ms']:+.1f} ms")
    for name, r in runs.items():
        if r.get("listen_overflows"):
            notes.append(f"{name}: {r['listen_overflows']} listen-queue overflows (SYNs dropped, 1 s retransmits) "
                         f"during the run, system-wide")
    print("; ".join(notes))
    for name in names[1:]:
        p = runs[name]
        if "_error" in p:
            continue
        conns_threads = p.get("threads_connected")
        line = (f"{name} memory: {p['n']} connections open, no request yet: VmRSS {kb(p['rss_connected_kb'])}, "
                f"{conns_threads} threads; at most streams open ({p['max_open']}): {kb(p['rss_max_open_kb'])} "
                f"({kb(p['huge_max_open_kb'])} of it AnonHugePages), {p['threads_max_open']} threads; "
                f"peak {kb(p['rss_peak_kb'])}")
        print(line)
        if p["max_open"] < p["n"]:
            print(f"  !! only {p['max_open']} of {p['n']} streams were open at once: the last first events came "
                  f"after the first streams ended (TTFE max {ms(p['ttfe_max_ms'])} ms)")
    print(f"gkm-proxy VmRSS: idle after start {kb(idle_rss)} ({idle_threads} threads); after the runs "
          f"{kb(after_rss)} ({after_threads} threads)")


def report_workers(results_path):
    rows, order = read_results(results_path)
    print_rows(rows, order)
    best = max((rows[k]["rps"] for k in order), default=0)
    if best:
        print("relative throughput: " + ", ".join(
            f"{k[1]} {rows[k]['rps'] / best:.2f}" for k in order) + " (of the best)")


def report_openai(results_path, ttfe_path):
    rows, order = read_results(results_path)
    print_rows(rows, order)
    parts = []

    def get(pass_, target):
        return rows.get((pass_, target))

    sn, so = get("saturating", "gkm-native"), get("saturating", "gkm-openai")
    if sn and so and sn["rps"]:
        parts.append(f"openai/native saturating throughput = {so['rps'] / sn['rps']:.2f}; "
                     f"added p50 {so['p50'] - sn['p50']:+.3f} ms, p99 {so['p99'] - sn['p99']:+.2f} ms; "
                     f"added cpu {so['cpu'] - sn['cpu']:+.1f} us/req")
    sa = get("saturating", "gkm-anthropic")
    if sn and sa and sn["rps"]:
        parts.append(f"anthropic/native saturating throughput = {sa['rps'] / sn['rps']:.2f}; "
                     f"added p50 {sa['p50'] - sn['p50']:+.3f} ms; added cpu {sa['cpu'] - sn['cpu']:+.1f} us/req")
    sr = get("saturating", "gkm-responses")
    if sn and sr and sn["rps"]:
        parts.append(f"responses/native saturating throughput = {sr['rps'] / sn['rps']:.2f}; "
                     f"added p50 {sr['p50'] - sn['p50']:+.3f} ms; added cpu {sr['cpu'] - sn['cpu']:+.1f} us/req")
    ln, lo = get("light", "gkm-native"), get("light", "gkm-openai")
    if ln and lo and ln["rps"]:
        parts.append(f"light load: openai/native throughput = {lo['rps'] / ln['rps']:.2f}; "
                     f"added p50 {lo['p50'] - ln['p50']:+.3f} ms, p99 {lo['p99'] - ln['p99']:+.2f} ms, "
                     f"mean cycle {lo['cycle'] - ln['cycle']:+.3f} ms; added cpu {lo['cpu'] - ln['cpu']:+.1f} us/req")
    la = get("light", "gkm-anthropic")
    if ln and la and ln["rps"]:
        parts.append(f"light load: anthropic/native throughput = {la['rps'] / ln['rps']:.2f}; "
                     f"added p50 {la['p50'] - ln['p50']:+.3f} ms; added cpu {la['cpu'] - ln['cpu']:+.1f} us/req")
    lr = get("light", "gkm-responses")
    if ln and lr and ln["rps"]:
        parts.append(f"light load: responses/native throughput = {lr['rps'] / ln['rps']:.2f}; "
                     f"added p50 {lr['p50'] - ln['p50']:+.3f} ms; added cpu {lr['cpu'] - ln['cpu']:+.1f} us/req")
    t = load_json(ttfe_path)
    if "openai" in t:
        o, p = t["openai"], t["proxied"]
        parts.append(
            f"streamed TTFE (n={t['n']}, mock 200 ms between 3 events, interleaved with the native TTFE above): "
            f"openai median {o['median_ms']:.2f} ms p90 {o['p90_ms']:.2f} ms, native proxied median "
            f"{p['median_ms']:.2f} ms p90 {p['p90_ms']:.2f} ms, diff {o['median_ms'] - p['median_ms']:+.2f} ms; "
            f"last event median openai {o['last_median_ms']:.0f} ms, native {p['last_median_ms']:.0f} ms")
    else:
        parts.append(f"streamed TTFE: no result ({t.get('_error', 'no openai entry')})")
    print("translation cost: " + ";\n        ".join(parts))


def report_resources(results_path):
    rows, order = read_results(results_path)
    print_rows(rows, order)
    parts = []
    for pass_ in ("saturating", "light"):
        base = rows.get((pass_, "gkm-native"))
        for target, what in (("gkm-fileref", "unknown file"), ("gkm-pinned", "pinned cache"),
                             ("gkm-baseline", "baseline build"), ("gkm-named", "named client")):
            r = rows.get((pass_, target))
            if base and r and base["rps"]:
                parts.append(f"{pass_} {what}/this build's plain throughput = {r['rps'] / base['rps']:.2f}; "
                             f"added p50 {r['p50'] - base['p50']:+.3f} ms; added cpu {r['cpu'] - base['cpu']:+.1f} us/req")
    print("resource lookup cost: " + ";\n        ".join(parts))


def report_socks(results_path):
    rows, order = read_results(results_path)
    print_rows(rows, order)
    parts = []
    for pass_ in ("saturating", "light"):
        base, r = rows.get((pass_, "gkm-native")), rows.get((pass_, "gkm-socks"))
        if base and r and base["rps"]:
            parts.append(f"{pass_} socks/direct throughput = {r['rps'] / base['rps']:.2f}; "
                         f"added p50 {r['p50'] - base['p50']:+.3f} ms, p99 {r['p99'] - base['p99']:+.3f} ms; "
                         f"added cpu {r['cpu'] - base['cpu']:+.1f} us/req")
    print("SOCKS5 hop cost: " + ";\n        ".join(parts))


def main(argv):
    if len(argv) >= 2 and argv[0] == "free-ports":
        free_ports(int(argv[1]))
    elif len(argv) >= 3 and argv[0] == "render":
        render(argv[1], argv[2], argv[3:])
    elif len(argv) == 2 and argv[0] == "wrk":
        parse_wrk(argv[1])
    elif len(argv) >= 2 and argv[0] == "cpu":
        cpu_seconds(*(int(p) for p in argv[1:]))
    elif len(argv) == 3 and argv[0] == "report":
        report(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "check-openai":
        check_openai(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "check-responses":
        check_responses(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "check-anthropic":
        check_anthropic(argv[1], argv[2])
    elif len(argv) >= 7 and argv[0] == "report-streams":
        report_streams(*argv[1:5], argv[5:])
    elif len(argv) == 2 and argv[0] == "report-workers":
        report_workers(argv[1])
    elif len(argv) == 3 and argv[0] == "report-openai":
        report_openai(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "report-resources":
        report_resources(argv[1])
    elif len(argv) == 2 and argv[0] == "report-socks":
        report_socks(argv[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
