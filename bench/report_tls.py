#!/usr/bin/env python3
"""Turn bench/compare-tls's runs (JSON lines) into a Markdown report: each workload over plain
TCP and over TLS, per broker, with what TLS costs.

Standard library only; shares bench/report.py's loading and summaries. Usage (bench/compare
calls it when REPORT points here):
    report_tls.py --jsonl RUNS.jsonl --out PREFIX [--meta key=value ...]
writes PREFIX.md.
"""

import argparse
import os
import sys
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (bench/report.py, beside this file)

# plain id -> (section, label, TLS id). The order here is the order in the report.
PAIRS = OrderedDict(
    [
        ("amqp-1k-noack", ("AMQP 1 KiB, 1 -> 1 queue -> 1", "auto-ack, unlimited rate", "amqp-1k-noack-tls")),
        ("amqp-1k-ack", ("AMQP 1 KiB, 1 -> 1 queue -> 1", "acks every 100, unlimited rate", "amqp-1k-ack-tls")),
        ("amqp-1k-rate", ("AMQP 1 KiB, 1 -> 1 queue -> 1", "acks every 100, {amqp_rate} msg/s", "amqp-1k-rate-tls")),
        ("mqtt-q1-1", ("MQTT QoS 1, 64 B, 1 -> 1", "in-flight 64, unlimited rate", "mqtt-q1-1-tls")),
        ("mqtt-q1-rate", ("MQTT QoS 1, 64 B, 1 -> 1", "in-flight 64, {mqtt_rate} msg/s", "mqtt-q1-rate-tls")),
    ]
)
BROKERS = ["pigeon", "rabbitmq", "mosquitto"]


def cpu_us_per_msg(s, rs):
    """Broker CPU microseconds per consumed message (median over the runs)."""
    per = [
        r["broker_cpu_s"] * 1e6 / r["report"]["consumed"]
        for r in rs
        if r["report"] is not None and r["report"].get("consumed")
    ]
    return report.median(per)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", action="append", default=[])
    a = ap.parse_args()
    meta = dict(m.split("=", 1) for m in a.meta)
    by = report.load(a.jsonl)
    brokers = [b for b in BROKERS if any(k[1] == b for k in by)]
    names = report.BROKER_NAMES

    md = []
    w = md.append
    w(f"# TLS next to plain TCP: Pigeon, RabbitMQ and Mosquitto, {meta.get('date', '')}")
    w("")
    w(
        "Written by `bench/compare-tls` (which runs `bench/compare` with the TLS workload set): "
        "one broker at a time on this machine, each driven by the same load generator "
        "(`pigeon bench ... --json`) on loopback, first over plain TCP and then over TLS with "
        "the same flags. Over TLS the bench verifies the broker's certificate against the run's "
        "own CA (`--cacert`, made with openssl by `interop/tls/make-certs.sh`: RSA 2048, a "
        "server certificate for localhost and 127.0.0.1); the brokers ask no client "
        "certificate (`verify_none`). Each cell is the **median of "
        f"{meta.get('runs', '?')} run(s)** of {meta.get('duration', '?')} s of publishing; lost "
        "and duplicates are summed over the runs. \"TLS / plain\" is the broker's consumed/s "
        "over TLS divided by its consumed/s over plain TCP (1.00: TLS costs no throughput); "
        "\"Pigeon ×\" is Pigeon's consumed/s over the other broker's on the same transport. "
        "Broker CPU per message is the broker process's user+system CPU over the run divided by "
        "the messages consumed. In the unlimited-rate runs throughput is the figure to read "
        "(without flow control latency is mostly queueing); the rate-limited runs "
        "show latency below saturation."
    )
    w("")
    w(
        f"Command: `RUNS={meta.get('runs', '?')} DURATION={meta.get('duration', '?')} "
        f"bench/compare-tls` (the rate-limited workloads at AMQP_RATE={meta.get('amqp_rate', '?')} "
        f"and MQTT_RATE={meta.get('mqtt_rate', '?')} msg/s)."
    )
    w("")
    if meta.get("note"):
        w(f"**Note.** {meta['note']}")
        w("")
    if meta.get("pigeon_tls") == "0" and "pigeon" in meta.get("brokers", ""):
        w(
            "**Pigeon ran over plain TCP only**: the binary used had no TLS listeners "
            "(`PIGEON_TLS=auto` found that it refuses a `[tls]` table), so its TLS rows are "
            "missing; rerun the same command with a Pigeon that has them."
        )
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
    w(
        f"- Load average (1, 5, 15 min) of the machine: {meta.get('loadavg', '?')} (the broker "
        "and the bench, plus whatever else ran: above the CPU count, runs compete for the "
        "cores and their figures scatter)."
    )
    w("")

    sections = OrderedDict()
    for plain, (section, label, tls) in PAIRS.items():
        sections.setdefault(section, []).append((plain, label.format(**{**{"amqp_rate": "?", "mqtt_rate": "?"}, **meta}), tls))
    commands = []
    for section, items in sections.items():
        present = [i for i in items if any(k[0] in (i[0], i[2]) for k in by)]
        if not present:
            continue
        confirms = section.startswith("MQTT")
        w(f"## {section}")
        w("")
        w(
            "| workload | broker | transport | published/s | consumed/s | p50 | p99 "
            + ("| confirm p50 | confirm p99 " if confirms else "")
            + "| lost | dup | broker CPU µs/msg | broker RSS | bench CPU | TLS / plain | Pigeon × |"
        )
        w(
            "| --- | --- | --- | ---: | ---: | ---: | ---: "
            + ("| ---: | ---: " if confirms else "")
            + "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        )
        for plain, label, tls in present:
            sums = {
                (wid, b): report.summarize(by[(wid, b)])
                for wid in (plain, tls)
                for b in brokers
                if (wid, b) in by
            }
            for b in brokers:
                for wid, transport in ((plain, "TCP"), (tls, "TLS")):
                    s = sums.get((wid, b))
                    if s is None:
                        continue
                    commands.append(s["command"])
                    cut = [e for e in s["endings"] if e not in ("completed", "quiet")]
                    flag = f" ({'/'.join(cut)})" if cut else ""
                    if s["reports"] < s["runs"]:
                        flag = f" ({s['runs'] - s['reports']} run(s) without a report)"
                    tls_ratio = None
                    if transport == "TLS":
                        base = sums.get((plain, b), {}).get("cons")
                        if base and s.get("cons"):
                            tls_ratio = s["cons"] / base
                    versus = None
                    pig = sums.get((wid, "pigeon"), {}).get("cons")
                    if b != "pigeon" and pig and s.get("cons"):
                        versus = pig / s["cons"]
                    lost = s.get("lost")
                    lost_s = "–" if lost is None else f"{lost:,}"
                    if lost and s.get("expected"):
                        lost_s += f" ({100 * lost / s['expected']:.1f}%)"
                    # A rate-limited publisher reads its PUBACKs only when its window is
                    # full, so its confirm latency measures the bench, not the broker.
                    limited = wid.startswith("mqtt-q1-rate")
                    confirm_cells = (
                        "| n/a | n/a "
                        if confirms and limited
                        else f"| {report.fmt_us(s.get('cp50'))} | {report.fmt_us(s.get('cp99'))} "
                        if confirms
                        else ""
                    )
                    w(
                        f"| {label} | {names[b]}{flag} | {transport} "
                        f"| {report.fmt_int(s.get('pub'))} | {report.fmt_int(s.get('cons'))} "
                        f"| {report.fmt_us(s.get('p50'))} | {report.fmt_us(s.get('p99'))} "
                        f"{confirm_cells}"
                        f"| {lost_s} | {report.fmt_int(s.get('dup'))} "
                        f"| {report.fmt_f(cpu_us_per_msg(s, by[(wid, b)]), '{:.1f}')} "
                        f"| {report.fmt_mib(s['rss'])} "
                        f"| {report.fmt_f(s.get('bench_cpu'), '{:.0f}%')} "
                        f"| {report.fmt_f(tls_ratio, '{:.2f}')} | {report.fmt_ratio(versus)} |"
                    )
        w("")
        errs = []
        for plain, label, tls in present:
            for wid in (plain, tls):
                for b in brokers:
                    if (wid, b) in by:
                        s = report.summarize(by[(wid, b)])
                        if s["failed_exits"]:
                            e = "; ".join(s["errors"][-2:]) or "see the JSON lines file"
                            errs.append(
                                f"- {wid}, {names[b]}: the bench exited non-zero in "
                                f"{s['failed_exits']} of {s['runs']} run(s) ({e})."
                            )
        if errs:
            w("Runs that did not end cleanly:")
            w("")
            md.extend(errs)
            w("")

    w("## Notes")
    w("")
    w(
        "- **TLS setup**: every broker serves the same certificate and key (RSA 2048, signed by "
        "the run's CA) with its default TLS settings: Pigeon rustls 0.23 with the ring provider "
        "(TLS 1.3 and 1.2), RabbitMQ Erlang/OTP's ssl, Mosquitto OpenSSL. All three negotiate "
        "TLS 1.3 with TLS_AES_256_GCM_SHA384 (checked with `openssl s_client` against each "
        "listener; the bench's rustls client lists that suite first too). The handshake is "
        "outside the timed part (connections are set up before publishing starts)."
    )
    w(
        "- **Confirm latency** (MQTT, publish call to PUBACK) is shown for the unlimited-rate "
        "runs only: a rate-limited publisher reads its PUBACKs when its in-flight window (64) "
        "is full, so there the figure is how long 64 messages take at the set rate."
    )
    w(
        "- **Same machine**: the bench encrypts and decrypts too, on the same cores as the "
        "broker; the bench CPU column shows its share."
    )
    w(
        "- RabbitMQ: `listeners.ssl.1` and `mqtt.listeners.ssl.1` with `ssl_options.cacertfile/"
        "certfile/keyfile`, `ssl_options.verify = verify_none`; Mosquitto: a second `listener` "
        "with `cafile`, `certfile`, `keyfile`; Pigeon: `amqps_listen`, `mqtts_listen` and a "
        "`[tls]` table (`certfile`, `keyfile`, `cacertfile`, `verify = \"verify_none\"`). "
        "Ports: Pigeon 5691/1891 plain, 5692/8891 TLS; RabbitMQ 5683/1887, 5685/8888; "
        "Mosquitto 1889, 8889 (all on 127.0.0.1)."
    )
    w(
        "- What `bench/compare` does otherwise (broker restarts, cuts, CPU and RSS sampling) is "
        "described in bench/README.md; the raw runs are in "
        f"`{a.out.split('/')[-1]}.jsonl`."
    )
    w("")
    w("## Commands")
    w("")
    w("`bench/compare-tls` ran, per broker and workload (`CERTS` is the run's certificate directory):")
    w("")
    w("```")
    seen = set()
    for c in commands:
        if c not in seen:
            seen.add(c)
            w(c)
    w("```")
    w("")
    open(a.out + ".md", "w").write("\n".join(md))


if __name__ == "__main__":
    main()
