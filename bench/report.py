#!/usr/bin/env python3
"""Turn bench/compare's raw runs (JSON lines) into a Markdown report and an SVG chart.

Standard library only. Usage (bench/compare calls it):
    report.py --jsonl RUNS.jsonl --out PREFIX [--meta key=value ...]
writes PREFIX.md and PREFIX.svg.
"""

import argparse
import json
import math
import statistics
from collections import OrderedDict
from html import escape

# id -> (family, label). The order here is the order in the report.
WORKLOADS = OrderedDict(
    [
        ("amqp-16-noack", ("AMQP transient", "1 -> 1 queue -> 1, 16 B, auto-ack")),
        ("amqp-16-ack", ("AMQP transient", "1 -> 1 queue -> 1, 16 B, ack every 100")),
        ("amqp-1k-noack", ("AMQP transient", "1 -> 1 queue -> 1, 1 KiB, auto-ack")),
        ("amqp-1k-ack", ("AMQP transient", "1 -> 1 queue -> 1, 1 KiB, ack every 100")),
        ("amqp-4q-ack", ("AMQP transient", "4 -> 4 queues -> 4, 16 B, ack every 100")),
        ("amqp-fanout", ("AMQP transient", "1 -> fanout to 4 queues -> 4, 16 B, ack every 100")),
        ("amqp-persist-1", ("AMQP persistent, confirms", "1 -> 1 durable queue -> 1, 1 KiB")),
        ("amqp-persist-4", ("AMQP persistent, confirms", "4 -> 1 durable queue -> 1, 1 KiB")),
        ("mqtt-q0-1", ("MQTT 64 B", "QoS 0, 1 -> 1")),
        ("mqtt-q1-1", ("MQTT 64 B", "QoS 1, 1 -> 1")),
        ("mqtt-q2-1", ("MQTT 64 B", "QoS 2, 1 -> 1")),
        ("mqtt-q0-4", ("MQTT 64 B", "QoS 0, 4 -> 4 (4 topics)")),
        ("mqtt-q1-4", ("MQTT 64 B", "QoS 1, 4 -> 4 (4 topics)")),
        ("mqtt-q2-4", ("MQTT 64 B", "QoS 2, 4 -> 4 (4 topics)")),
        ("mqtt-fan100-q0", ("MQTT 64 B", "QoS 0, 1 -> 100 subscribers (fan-out)")),
        ("mqtt-fan100-q1", ("MQTT 64 B", "QoS 1, 1 -> 100 subscribers (fan-out)")),
        (
            "cross-q1",
            ("Cross-protocol", "MQTT QoS 1 -> amq.topic -> 1 queue -> AMQP, 64 B, ack every 100"),
        ),
        ("amqp-1k-noack-tls", ("TLS (bench/compare-tls)", "AMQP over TLS, 1 -> 1, 1 KiB, auto-ack")),
        ("amqp-1k-ack-tls", ("TLS (bench/compare-tls)", "AMQP over TLS, 1 -> 1, 1 KiB, ack every 100")),
        ("amqp-1k-rate", ("TLS (bench/compare-tls)", "AMQP, 1 -> 1, 1 KiB, ack every 100, rate-limited")),
        ("amqp-1k-rate-tls", ("TLS (bench/compare-tls)", "AMQP over TLS, 1 -> 1, 1 KiB, ack every 100, rate-limited")),
        ("mqtt-q1-1-tls", ("TLS (bench/compare-tls)", "MQTT over TLS, QoS 1, 1 -> 1, 64 B")),
        ("mqtt-q1-rate", ("TLS (bench/compare-tls)", "MQTT QoS 1, 1 -> 1, 64 B, rate-limited")),
        ("mqtt-q1-rate-tls", ("TLS (bench/compare-tls)", "MQTT over TLS, QoS 1, 1 -> 1, 64 B, rate-limited")),
        ("idle-mqtt", ("Idle connections", "idle MQTT connections")),
        ("idle-amqp", ("Idle connections", "idle AMQP connections, one channel each")),
    ]
)
BROKER_NAMES = {"pigeon": "Pigeon", "rabbitmq": "RabbitMQ", "mosquitto": "Mosquitto"}
# Families whose tables also show confirm latency (the bench's `confirm_latency_us`).
CONFIRM_FAMILIES = {"AMQP persistent, confirms", "MQTT 64 B"}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_int(x):
    return "–" if x is None else f"{x:,.0f}"


def fmt_us(x):
    if x is None:
        return "–"
    if x >= 10_000:
        return f"{x / 1000:,.0f} ms"
    if x >= 1000:
        return f"{x / 1000:.1f} ms"
    return f"{x:.0f} µs"


def fmt_f(x, spec):
    return "–" if x is None else spec.format(x)


def fmt_mib(kib):
    return "–" if kib is None else f"{kib / 1024:,.0f} MiB"


def fmt_ratio(r):
    if r is None:
        return "–"
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def load(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    by = OrderedDict()
    for r in runs:
        by.setdefault((r["workload"], r["broker"]), []).append(r)
    return by


def summarize(rs):
    """Medians over the runs that produced a report; lost and duplicates summed over all runs."""
    ok = [r for r in rs if r["report"] is not None]
    rep = [r["report"] for r in ok]
    s = {
        "runs": len(rs),
        "reports": len(ok),
        "failed_exits": sum(1 for r in rs if r["exit"] != 0),
        "cpu": median([r["broker_cpu_s"] for r in ok]),
        "rss": median([r["broker_rss_peak_kib"] for r in ok]),
        "command": rs[0]["command"],
        "errors": [e.split("control: ", 1)[-1] for r in rs for e in r.get("stderr_tail", [])[-1:]],
        "endings": sorted({x.get("ending", "?") for x in rep}),
    }
    if rep and "published_per_s" in rep[0]:
        s["pub"] = median([x["published_per_s"] for x in rep])
        s["cons"] = median([x["consumed_per_s"] for x in rep])
        s["p50"] = median([x["latency_us"]["p50"] for x in rep if x.get("latency_us")])
        s["p99"] = median([x["latency_us"]["p99"] for x in rep if x.get("latency_us")])
        # Publish call to confirm; absent from reports of runs without confirms (and of benches
        # older than the field).
        s["cp50"] = median(
            [x["confirm_latency_us"]["p50"] for x in rep if x.get("confirm_latency_us")]
        )
        s["cp99"] = median(
            [x["confirm_latency_us"]["p99"] for x in rep if x.get("confirm_latency_us")]
        )
        s["lost"] = sum(x["lost"] for x in rep)
        s["dup"] = sum(x["duplicates"] for x in rep)
        s["expected"] = sum(x["expected"] for x in rep)
        s["bench_cpu"] = median([x["bench_cpu"]["percent_of_one_core"] for x in rep])
        # Deliveries each message should make (fan-out: one per subscriber or queue).
        s["copies"] = median(
            [x["expected"] / x["published"] for x in rep if x.get("published") and x.get("expected")]
        )
    elif rep:
        s["opened"] = median([x["opened"] for x in rep])
        s["failed"] = median([x["failed"] for x in rep])
        s["dropped"] = median([x["dropped_during_hold"] for x in rep])
        b = [x.get("broker") or {} for x in rep]
        s["rss_before"] = median([x.get("rss_before_kib") for x in b])
        s["rss_open"] = median([x.get("rss_all_open_kib") for x in b])
        s["per_conn"] = median([x.get("per_connection_kib") for x in b])
        s["open_s"] = median([x["open_s"] for x in rep])
        s["requested"] = median([x["requested"] for x in rep])
        s["protocol"] = rep[0].get("protocol", "?")
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", action="append", default=[])
    a = ap.parse_args()
    meta = dict(m.split("=", 1) for m in a.meta)
    by = load(a.jsonl)
    brokers = [b for b in ["pigeon", "rabbitmq", "mosquitto"] if any(k[1] == b for k in by)]

    md = []
    w = md.append
    w(f"# Pigeon, RabbitMQ and Mosquitto side by side, {meta.get('date', '')}")
    w("")
    w(
        "Written by `bench/compare`: one broker at a time on this machine, each driven by the same "
        "load generator (`pigeon bench ... --json`), on loopback, bench and broker sharing the "
        "machine's cores. Each cell is the **median of "
        f"{meta.get('runs', '?')} run(s)** of {meta.get('duration', '?')} s of publishing; "
        "lost and duplicates are **summed** over the runs. Throughput is messages per second; "
        "\"Pigeon ×\" is Pigeon's consumed/s divided by the other broker's (above 1: Pigeon "
        "delivered more). Broker CPU is the broker process's user+system seconds over the whole "
        "run (from `/proc/PID/stat`), broker RSS its peak VmRSS sampled every 0.2 s during the run, "
        "bench CPU the load generator's own CPU as a percentage of one core (near 100% per core, "
        "the generator may be the limit)."
    )
    w("")
    if meta.get("note"):
        w(f"**Note.** {meta['note']}")
        w("")
    w("## Machine and versions")
    w("")
    for k, label in [
        ("nproc", "CPUs (nproc)"),
        ("cpu", "CPU"),
        ("memory", "Memory"),
        ("kernel", "Kernel"),
        ("pigeon", "Pigeon"),
        ("rabbitmq", "RabbitMQ"),
        ("mosquitto", "Mosquitto"),
    ]:
        w(f"- {label}: {meta.get(k, '?')}")
    w(
        f"- Runs: RUNS={meta.get('runs')} DURATION={meta.get('duration')} s; the whole "
        f"comparison took {int(meta.get('elapsed_s', 0)) // 60} min "
        f"{int(meta.get('elapsed_s', 0)) % 60} s."
    )
    w("")

    ratios = []  # (label, other, ratio)
    families = OrderedDict()
    for wid, (fam, label) in WORKLOADS.items():
        families.setdefault(fam, []).append((wid, label))

    commands = []
    for fam, items in families.items():
        present = [(wid, label) for wid, label in items if any(k[0] == wid for k in by)]
        if not present:
            continue
        w(f"## {fam}")
        w("")
        idle = fam == "Idle connections"
        confirms = fam in CONFIRM_FAMILIES
        if idle:
            w(
                "| workload | broker | requested | opened | failed | dropped | RSS before "
                "| RSS all open | KiB per connection | time to open |"
            )
            w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        else:
            w(
                "| workload | broker | published/s | consumed/s | p50 | p99 "
                + ("| confirm p50 | confirm p99 " if confirms else "")
                + "| lost | duplicates | broker CPU s | broker RSS | bench CPU | Pigeon × |"
            )
            w(
                "| --- | --- | ---: | ---: | ---: | ---: "
                + ("| ---: | ---: " if confirms else "")
                + "| ---: | ---: | ---: | ---: | ---: | ---: |"
            )
        fanned = False
        for wid, label in present:
            sums = {b: summarize(by[(wid, b)]) for b in brokers if (wid, b) in by}
            pig = sums.get("pigeon", {}).get("cons")
            copies = max([s.get("copies") or 1 for s in sums.values()] + [1])
            if copies > 1.01:
                label = f"{label} †"
                fanned = True
            for b, s in sums.items():
                commands.append((wid, b, s["command"]))
                flag = ""
                cut = [e for e in s["endings"] if e not in ("completed", "quiet")]
                if cut and not idle:
                    flag = f" ({'/'.join(cut)})"
                if s["reports"] < s["runs"]:
                    flag = f" ({s['runs'] - s['reports']} run(s) without a report)"
                if idle:
                    w(
                        f"| {label} | {BROKER_NAMES[b]}{flag} | {fmt_int(s.get('requested'))} "
                        f"| {fmt_int(s.get('opened'))} "
                        f"| {fmt_int(s.get('failed'))} | {fmt_int(s.get('dropped'))} "
                        f"| {fmt_mib(s.get('rss_before'))} | {fmt_mib(s.get('rss_open'))} "
                        f"| {fmt_f(s.get('per_conn'), '{:.1f}')} "
                        f"| {fmt_f(s.get('open_s'), '{:.1f} s')} |"
                    )
                    continue
                ratio = None
                if b != "pigeon" and pig and s.get("cons"):
                    ratio = pig / s["cons"]
                    lossy = any(
                        x.get("expected") and x.get("lost", 0) > 0.01 * x["expected"]
                        for x in (s, sums["pigeon"])
                    ) or bool(cut)
                    pig_cut = [e for e in sums["pigeon"]["endings"] if e not in ("completed", "quiet")]
                    lossy = lossy or bool(pig_cut)
                    ratios.append((label + (" *" if lossy else ""), BROKER_NAMES[b], ratio, fam))
                lost = s.get("lost")
                lost_s = "–" if lost is None else f"{lost:,}"
                if lost and s.get("expected"):
                    lost_s += f" ({100 * lost / s['expected']:.1f}%)"
                confirm_cells = (
                    f"| {fmt_us(s.get('cp50'))} | {fmt_us(s.get('cp99'))} " if confirms else ""
                )
                w(
                    f"| {label} | {BROKER_NAMES[b]}{flag} | {fmt_int(s.get('pub'))} "
                    f"| {fmt_int(s.get('cons'))} | {fmt_us(s.get('p50'))} | {fmt_us(s.get('p99'))} "
                    f"{confirm_cells}"
                    f"| {lost_s} | {fmt_int(s.get('dup'))} "
                    f"| {fmt_f(s['cpu'], '{:.1f}')} | {fmt_mib(s['rss'])} "
                    f"| {fmt_f(s.get('bench_cpu'), '{:.0f}%')} "
                    f"| {fmt_ratio(ratio)} |"
                )
        w("")
        if fanned:
            w(
                "† Fan-out: each message is delivered once to every queue (AMQP fanout exchange) "
                "or subscriber (MQTT). **consumed/s counts every delivery, copies included** (a "
                "message fanned out to 4 queues counts 4 times), and so does the latency "
                "histogram (one sample per delivery); lost and duplicates are counted per queue "
                "or subscriber (each should get every message once) and summed. published/s "
                "counts each message once."
            )
            w("")
        errs = []
        for wid, label in present:
            for b in brokers:
                if (wid, b) in by:
                    s = summarize(by[(wid, b)])
                    if s["failed_exits"]:
                        e = "; ".join(s["errors"][-2:]) or "see the JSON lines file"
                        errs.append(
                            f"- {label}, {BROKER_NAMES[b]}: the bench exited non-zero in "
                            f"{s['failed_exits']} of {s['runs']} run(s) (lost or duplicated "
                            f"messages, or an error: {e})."
                        )
        if errs:
            w("Runs that did not end cleanly:")
            w("")
            md.extend(errs)
            w("")

    w("## Notes")
    w("")
    w(
        "- **Persistent messages: the comparison is not like for like.** Pigeon confirms a "
        "persistent message only after `fdatasync` (the default `fsync = true`, kept here). "
        "RabbitMQ confirms a persistent message once it has been written and fsynced to its "
        "message store (fsyncs are batched) *or* once every queue it was routed to has delivered "
        "it and had it acknowledged, whichever comes first (its publisher-confirms documentation "
        "and the 2011 announcement); with a consumer keeping up, as in these runs, many messages "
        "may be confirmed without ever being fsynced. The brief for this script said RabbitMQ "
        "3.10 does not fsync before confirming; that was not verified here beyond the documented "
        "rule above. All brokers' data directories are on the same real "
        "disk (not tmpfs)."
    )
    w(
        "- **Confirm latency** (confirm p50 and p99, medians over the runs like p50 and p99): "
        "for each message, the time from the bench's publish call to the broker's `basic.ack` "
        "(or `basic.nack`) settling it, as the producer reads it; in the MQTT tables, to the "
        "PUBACK (QoS 1) or PUBCOMP (QoS 2), none at QoS 0. p50 and p99 are end-to-end: publish "
        "call to delivery to the consumer. With a full confirm window the producer is waiting for "
        "exactly these answers, so the confirm latency is mostly how long the broker takes to "
        "take responsibility for a message (for persistent messages, its write and sync policy: "
        "see the note above)."
    )
    w(
        "- **Mosquitto's default limits** are kept (`max_queued_messages 1000` per client, "
        "`max_inflight_messages 20`): when a subscriber falls behind, Mosquitto drops QoS 1 and 2 "
        "messages beyond its queue, and they show as lost. QoS 0 messages may be dropped by any "
        "broker. Pigeon's `mqtt_max_queued_messages` is 100,000 (drop-head)."
    )
    w(
        "- **Throughput ratios and losses**: \"Pigeon ×\" compares messages delivered per "
        "second, whatever was lost. Where a broker drops (QoS 0 past a subscriber's queue limit, "
        "Mosquitto's QoS 1/2 queue limit) read it with the lost column: delivering more per "
        "second while dropping more is not simply better. In the SVG such bars carry a `*`."
    )
    w(
        "- **No flow control without acks or confirms**: in the auto-ack and QoS 0 runs the "
        "producers publish as fast as the broker reads, so queues build up and latency is mostly "
        "queueing delay (seconds); compare throughput there, and latency in the acknowledged runs."
    )
    w(
        "- **Cut runs**: a load run still delivering "
        f"{meta.get('drain_max', '?')} s after publishing ended (plus 5 s for setup) is "
        "interrupted (SIGINT; the bench still reports); the messages it had not delivered by "
        "then count as lost. A broker cell marked with the run's ending (`interrupted`, "
        "`stalled`, ...) had such runs: its lost column is then mostly backlog, not drops. "
        "Cells without a mark ended normally (`completed`, or `quiet`: deliveries stopped "
        "and the missing messages were dropped by the broker)."
    )
    w(
        "- **Same machine**: the bench, the broker and whatever else the machine is doing share "
        "the CPUs; the brokers run one at a time. The bench CPU column shows when the generator, "
        "not the broker, may be the limit (against Mosquitto at QoS 1/2 it is near 100% of a core)."
    )
    w(
        "- **Skipped**: AMQP workloads and the cross-protocol one run on Pigeon and RabbitMQ only "
        "(Mosquitto speaks MQTT). Idle MQTT connections are measured on Pigeon and Mosquitto, "
        "idle AMQP connections on Pigeon and RabbitMQ (RabbitMQ's MQTT plugin is run for "
        "throughput only). MQTT QoS 2 on RabbitMQ: its MQTT plugin (3.10) does not support "
        "QoS 2 (it answers a QoS 2 PUBLISH with no PUBREC, so a publisher stalls once its window "
        "is full). "
        + (
            "MQTT QoS 0 fan-out to 100 subscribers on RabbitMQ: its MQTT plugin already builds "
            "seconds of backlog at QoS 0 1 -> 1 (see above), so with a hundredfold fan-out every "
            "run would only end where it is cut."
            if any(k[0] == "mqtt-fan100-q0" for k in by)
            else "MQTT QoS 0 fan-out to 100 subscribers is optional (`WORKLOADS=all` or "
            "`WORKLOADS=mqtt-fan100-q0`) and did not run: publishing at QoS 0 outruns every "
            "broker's hundredfold delivery, so each run lasts until it is cut, which would take "
            "the comparison past 15 minutes."
        )
    )
    w(
        "- **AMQP fanout**: `pigeon bench --fanout` declares a transient fanout exchange of its "
        "own (`pigeon-bench-fanout-<run>`), binds the run's 4 queues to it, and the producer "
        "publishes there; each consumer reads one queue and should get every message once, "
        "and the exchange and queues are deleted at the end."
    )
    w(
        "- **Cross-protocol**: `pigeon bench cross` publishes with MQTT (QoS 1, in-flight "
        "window 64) to `pigeon-bench/<run>/0`, which both Pigeon and RabbitMQ's MQTT plugin route "
        "through `amq.topic` with the routing key `pigeon-bench.<run>.0` (`/` becomes `.`); an "
        "AMQP queue declared by the bench is bound there with that key and read by an AMQP "
        "consumer (manual acks every 100). The same stamps measure latency, loss and duplicates."
    )
    fresh = meta.get("fresh", "?")
    if fresh == "auto":
        fresh_text = (
            "Pigeon and Mosquitto (which start in well under a second) were restarted before "
            "every workload; RabbitMQ (several seconds to start and stop) only when its RSS had "
            f"grown more than {meta.get('growth_pct', '?')}% above its RSS at the start of its "
            "first run since it started (the runs of one workload always share a broker), so "
            "that memory left over from a backlog does not show in the next workloads' RSS"
        )
    elif fresh == "workload":
        fresh_text = "every broker was restarted before every workload"
    else:
        fresh_text = "each broker was started once (FRESH=broker)"
    w(
        f"- **Broker restarts** (FRESH={fresh}): {fresh_text}. Idle-connection runs always ran on "
        "a broker that had run nothing yet (a restart before each run). "
        f"{meta.get('starts', '?')} broker starts in all. Each run's RSS at its start is in the "
        "JSON lines (`broker_rss_start_kib`, and `broker_fresh` when the broker had just started)."
    )
    w(
        f"- **Timing**: {meta.get('duration', '?')} s of publishing per run, idle connections "
        f"held {meta.get('idle_hold', '?')} s, runs cut {meta.get('drain_max', '?')} s after "
        "publishing ended, so that the whole comparison fits in 15 minutes on 2 cores (the "
        "first comparison, with 14 workloads, 5 s runs, 10 s cuts, 5 s holds and a restart "
        "before every workload, took 14 min 21 s)."
    )
    w(
        "- RabbitMQ runs as a temporary node (`compare@localhost`, AMQP 5683, MQTT 1887, "
        "distribution 25683) with the `rabbitmq_mqtt` plugin and otherwise default settings "
        "(classic queues, default credit flow, no management plugin); its node directory is "
        "made at its first start and kept for its restarts (a fresh process on an existing "
        "schema starts in about half the time; every bench run deletes what it declared), and "
        "its open-files limit is raised from the 1,024 that `su` sets to the hard limit, which "
        "2,000 AMQP connections need. Mosquitto: `listener 1889 "
        "127.0.0.1`, `allow_anonymous true`, `persistence false`. Pigeon: `[server]` on 5691/1891, "
        "`mqtt_sys_interval = 0`, otherwise defaults."
    )
    w(f"- Raw per-run results, with the bench's full JSON reports: `{a.out.split('/')[-1]}.jsonl`.")
    w("")
    w("## Commands")
    w("")
    w("`bench/compare` ran, per broker, for each workload:")
    w("")
    w("```")
    seen = set()
    for wid, b, c in commands:
        if c not in seen:
            seen.add(c)
            w(c)
    w("```")
    w("")
    w("![Pigeon's throughput relative to the others](" + a.out.split("/")[-1] + ".svg)")
    w("")
    open(a.out + ".md", "w").write("\n".join(md))
    open(a.out + ".svg", "w").write(svg(ratios, meta))


def svg(ratios, meta):
    """Horizontal bars of Pigeon/other consumed-throughput ratios, on a log scale around 1."""
    colors = {"RabbitMQ": "#ff6600", "Mosquitto": "#3c5280"}
    bar_h, gap, left, right, top = 16, 4, 400, 50, 60
    width = 1000
    plot_w = width - left - right
    finite = [r for _, _, r, _ in ratios if r and r > 0]
    lo = min([0.5] + [r / 1.2 for r in finite])
    hi = max([2.0] + [r * 1.2 for r in finite])
    lmin, lmax = math.log10(lo), math.log10(hi)

    def x(r):
        return left + (math.log10(r) - lmin) / (lmax - lmin) * plot_w

    rows = []
    y = top
    last_fam = None
    for label, other, r, fam in ratios:
        if fam != last_fam:
            rows.append(("fam", fam, y))
            y += bar_h + gap
            last_fam = fam
        rows.append(("bar", (label, other, r), y))
        y += bar_h + gap
    height = y + 50
    o = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        f"Pigeon's throughput (consumed/s) relative to RabbitMQ and Mosquitto</text>",
        f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">'
        f"{escape(meta.get('date', ''))}, {escape(meta.get('nproc', '?'))} CPUs, median of "
        f"{escape(meta.get('runs', '?'))} run(s) of {escape(meta.get('duration', '?'))} s; "
        f"log scale, right of 1: Pigeon faster</text>",
    ]
    # grid
    ticks = [t for t in [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100] if lo <= t <= hi]
    for t in ticks:
        xx = x(t)
        o.append(
            f'<line x1="{xx:.1f}" y1="{top - 5}" x2="{xx:.1f}" y2="{y}" '
            f'stroke="{"#000" if t == 1 else "#ddd"}" stroke-width="{1.5 if t == 1 else 1}"/>'
        )
        o.append(f'<text x="{xx:.1f}" y="{y + 16}" text-anchor="middle">{t:g}×</text>')
    for kind, v, yy in rows:
        if kind == "fam":
            o.append(f'<text x="10" y="{yy + 12}" font-weight="bold">{escape(v)}</text>')
            continue
        label, other, r = v
        o.append(
            f'<text x="{left - 8}" y="{yy + 12}" text-anchor="end">{escape(label)} '
            f"vs {escape(other)}</text>"
        )
        x0, x1 = sorted([x(1), x(r)])
        o.append(
            f'<rect x="{x0:.1f}" y="{yy}" width="{max(x1 - x0, 1):.1f}" height="{bar_h}" '
            f'fill="{colors.get(other, "#888")}"/>'
        )
        tx = x(r) + (4 if r >= 1 else -4)
        anchor = "start" if r >= 1 else "end"
        o.append(f'<text x="{tx:.1f}" y="{yy + 12}" text-anchor="{anchor}">{fmt_ratio(r)}</text>')
    if any(lab.endswith(" *") for lab, _, _, _ in ratios):
        o.append(
            f'<text x="10" y="{y + 38}" fill="#555">* more than 1% of the messages lost '
            f"(QoS 0 drops, queue limits, or a cut run): see the tables</text>"
        )
    lx = left + 250
    for name, c in colors.items():
        o.append(f'<rect x="{lx}" y="{y + 28}" width="12" height="12" fill="{c}"/>')
        o.append(f'<text x="{lx + 16}" y="{y + 38}">vs {name}</text>')
        lx += 120
    o.append("</svg>")
    return "\n".join(o) + "\n"


if __name__ == "__main__":
    main()
