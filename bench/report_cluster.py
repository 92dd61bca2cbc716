#!/usr/bin/env python3
"""bench/report_cluster.py: the tables of bench/cluster_compare.sh's .jsonl (standard library only).

python3 bench/report_cluster.py --jsonl bench/results/<date>-cluster.jsonl --out /tmp/x.md
"""
import argparse
import json
import statistics
from collections import defaultdict

BROKERS = ["pigeon", "rabbitmq"]
NAMES = {"pigeon": "Pigeon", "rabbitmq": "RabbitMQ"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def num(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def ms(us):
    return "-" if us is None else f"{us / 1000:.1f}"


def ratio(p, r, higher_is_better=True):
    if not p or not r:
        return "-"
    return f"{p / r:.2f}x" if higher_is_better else f"{r / p:.2f}x"


def rates(log, kill, report, duration):
    """The median confirmed/s of the bench's progress lines before `kill` (Unix ms) and from a
    second after confirms resumed (the end of the longest ack gap) to the end of publishing."""
    import datetime
    import re

    resumed = (report.get("max_confirm_gap") or {}).get("to_unix_ms") or kill
    before, after = [], []
    line_re = re.compile(r"(\S+Z)\s.*\s(\d+)s\s+published\s+\d+/s\s+confirmed\s+(\d+)/s")
    for line in open(log):
        m = line_re.match(line)
        if not m:
            continue
        t = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() * 1000
        secs, rate = int(m.group(2)), int(m.group(3))
        if secs > 1 and t < kill:
            before.append(rate)
        elif t > resumed + 1000 and secs < duration:
            after.append(rate)
    return {"before": med(before), "after": med(after), "after_samples": after}


def main():
    import sys

    if len(sys.argv) == 6 and sys.argv[1] == "--rates":
        log, kill, report, duration = sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(rates(log, kill, report, duration)))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", action="append", default=[])
    ap.add_argument("--series", help="only the rows of this series (a field a merged .jsonl adds)")
    a = ap.parse_args()
    meta = dict(m.split("=", 1) for m in a.meta)
    rows = [json.loads(line) for line in open(a.jsonl) if line.strip()]
    if a.series:
        rows = [r for r in rows if r.get("series") == a.series]
    head = next((r for r in rows if r["step"] == "meta"), {})
    out = [
        "# Quorum queues: a three-node Pigeon cluster and a three-node RabbitMQ cluster",
        "",
        f"Machine: {head.get('machine', '?')}; RabbitMQ {head.get('rabbitmq', '?')}; "
        f"{head.get('pigeon', 'pigeon')}; started {head.get('started', '?')}, load average then "
        f"{head.get('loadavg', '?')}. {meta.get('runs', '?')} runs of each workload per broker, "
        f"alternating brokers; medians (every run is in the .jsonl).",
    ]

    runs = defaultdict(list)
    for r in rows:
        if r["step"] in ("throughput", "latency"):
            runs[(r["workload"], r["broker"])].append(r)
    workloads = []
    for r in rows:
        if r["step"] in ("throughput", "latency") and r["workload"] not in workloads:
            workloads.append(r["workload"])
    if workloads:
        out += [
            "",
            "## Throughput and latency",
            "",
            "| workload | broker | confirmed/s | consumed/s | confirm p50 / p99 (ms) | longest confirm gap (ms) | publish-to-deliver p50 / p99 (ms) | brokers' CPU s (3 nodes) | lost / dup / nacked / errors | runs (consumed/s) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for w in workloads:
            meds = {}
            for b in BROKERS:
                rs = runs.get((w, b))
                if not rs:
                    continue
                rep = [r["report"] for r in rs]
                lat = lambda k, q: med([(x.get(k) or {}).get(q) for x in rep])
                conf = med([x.get("confirmed_per_s") for x in rep])
                cons = med([x.get("consumed_per_s") for x in rep])
                meds[b] = (conf, cons, lat("confirm_latency_us", "p50"), lat("latency_us", "p50"))
                bad = "/".join(
                    str(sum((x.get(k) or 0) for x in rep)) for k in ("lost", "duplicates", "nacked")
                ) + f"/{sum(len(x.get('errors') or []) for x in rep)}"
                out.append(
                    f"| {w} | {NAMES[b]} | {num(conf)} | {num(cons)} | "
                    f"{ms(lat('confirm_latency_us', 'p50'))} / {ms(lat('confirm_latency_us', 'p99'))} | "
                    # The longest wait between two acks of a publisher (`max_confirm_gap`): a
                    # stall of the whole group shows here even when it is under 1% of confirms.
                    f"{num(med([(x.get('max_confirm_gap') or {}).get('ms') for x in rep]))} | "
                    f"{ms(lat('latency_us', 'p50'))} / {ms(lat('latency_us', 'p99'))} | "
                    f"{med([r['broker_cpu_s'] for r in rs]):.1f} | {bad} | "
                    + ", ".join(f"{num(x.get('consumed_per_s'))} (load {r.get('loadavg')})" for x, r in zip(rep, rs))
                    + " |"
                )
            if "pigeon" in meds and "rabbitmq" in meds:
                p, r = meds["pigeon"], meds["rabbitmq"]
                out.append(
                    f"| {w} | **Pigeon / RabbitMQ** | **{ratio(p[0], r[0])}** | **{ratio(p[1], r[1])}** | "
                    f"p50 {ratio(p[2], r[2])} RabbitMQ's | | p50 {ratio(p[3], r[3])} RabbitMQ's | | | |"
                )
        flags = {r["workload"]: r["flags"] for r in rows if r["step"] in ("throughput", "latency")}
        out += ["", "Flags (besides `--json`; the URLs shown are RabbitMQ's nodes, 22801-22803; Pigeon's runs had its own, 22701-22703, in the same places):", ""]
        out += [f"- `{w}`: `pigeon bench {flags[w]}`" for w in workloads]

    fails = [r for r in rows if r["step"] == "failover"]
    if fails:
        out += [
            "",
            "## Failover: SIGKILL of the queue's leader during confirmed publishing",
            "",
            "| broker | run | killed node | kill -> first ack after it (ms) | longest wait between two acks (ms) | confirmed/s before the kill | confirmed/s once resumed | nacked | lost | duplicates | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        per = defaultdict(list)
        for r in fails:
            rep = r["report"]
            gap = rep.get("max_confirm_gap") or {}
            # The longest wait is the failover's when it spans the kill; otherwise confirms came
            # back after the kill within less than the longest wait (at most that long).
            # (50 ms of slack: the kill's time is taken just before the signal is sent, and a
            # killed node may still get an ack out.)
            if gap and gap["from_unix_ms"] <= r["kill_unix_ms"] + 50 <= gap["to_unix_ms"] + 50:
                resume = gap["to_unix_ms"] - r["kill_unix_ms"]
            else:
                resume = None
            rate = r.get("confirmed_per_s") or {}
            per[r["broker"]].append((resume, gap.get("ms"), rate.get("before"), rate.get("after")))
            errs = "; ".join(rep.get("errors") or [])
            out.append(
                f"| {NAMES[r['broker']]} | {r['run']} | {r['killed_node']} | {num(resume)} | {num(gap.get('ms'))} | "
                f"{num(rate.get('before'))} | {num(rate.get('after'))} | {rep.get('nacked')} | {rep.get('lost')} | {rep.get('duplicates')} | {errs[:200]} |"
            )
        for b in BROKERS:
            if per.get(b):
                out.append(
                    f"| **{NAMES[b]} median** | | | **{num(med([x[0] for x in per[b]]))}** | **{num(med([x[1] for x in per[b]]))}** | "
                    f"{num(med([x[2] for x in per[b]]))} | {num(med([x[3] for x in per[b]]))} | | | | |"
                )

    mem = [r for r in rows if r["step"] == "memory"]
    if mem:
        base = {r["broker"]: r for r in mem if r["queues"] == 0}
        decl = {(r["broker"], r["queues"]): r.get("report") or {} for r in rows if r["step"] == "declare"}
        out += [
            "",
            "## Idle quorum queues: memory and CPU",
            "",
            "| broker | quorum queues (3 members each) | declared in (s) | RSS per node (MiB) | RSS added, 3 nodes (MiB) | per queue (KiB, 3 members) | per member (KiB) | idle CPU per node (% of a core) |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |",
        ]
        for r in mem:
            b, q = r["broker"], r["queues"]
            rss = r["rss_kib"]
            added = sum(rss) - sum(base[b]["rss_kib"]) if b in base else None
            d = decl.get((b, q), {})
            per_q = added / q if q and added is not None else None
            out.append(
                f"| {NAMES[b]} | {q:,} | {num(d.get('seconds'), 1) if q else '-'} | "
                + " / ".join(f"{x / 1024:.0f}" for x in rss)
                + f" | {num(added / 1024 if added is not None and q else None)} | {num(per_q, 1)} | {num(per_q / 3 if per_q else None, 1)} | "
                + " / ".join(f"{c:.2f}" for c in r["idle_cpu_pct"])
                + f" (over {r['idle_secs']} s) |"
            )
    open(a.out, "w").write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
