#!/usr/bin/env bash
# bench/stream_compare.sh: Pigeon's and RabbitMQ's streams side by side, on this machine, in one
# run, under the same load generator (`pigeon bench stream ... --json`, the bench's own RabbitMQ
# Stream protocol client). See bench/README.md ("Streams") and docs/performance.md ("Streams").
#
# Both brokers run at once, each on ports of its own (none of them the defaults, so brokers
# already running here are left alone); each workload runs RUNS times, alternating brokers run by
# run so that the noise of a busy machine falls on both alike. Every run uses a fresh stream of
# its own (created and deleted by the bench). RabbitMQ is Debian's rabbitmq-server with the
# rabbitmq_stream plugin, started as a separate node as bench/compare does.
#
# Environment:
#   RUNS=3              runs of each workload per broker (the table shows the median and all runs)
#   DURATION=5          seconds each run publishes
#   BROKERS="pigeon rabbitmq"
#   WORKLOADS="pub1-sub1-16 pub1-sub1-16-subentry pub1-sub1-1k pub2-sub2-16"   (see workloads();
#                       pub1-sub1-16-subentry-w400k, the sub-entry run with a 4x window, on request)
#   PIGEON_BIN=...      the Pigeon binary (default: target/release/pigeon, built when missing)
#   BENCH_TMPDIR=/var/tmp   where the brokers' data goes (a real disk: fsync must mean it)
#   OUT=bench/results/<date>-streams   output prefix (.md and .jsonl)
#   KEEP_RABBIT=0       1: leave RabbitMQ's node directory in place at exit (for a look at its logs)
#   READ_MB=0           also compare reading: fill a stream of this many MB of 1000-byte messages
#                       on each broker (`-y 0`), then read it back from first RUNS times with
#                       `-x 0`, the page cache dropped before each read when we may
#                       (`echo 3 > /proc/sys/vm/drop_caches`, as root); the stream is deleted after
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
BROKERS=${BROKERS:-"pigeon rabbitmq"}
WORKLOADS=${WORKLOADS:-"pub1-sub1-16 pub1-sub1-16-subentry pub1-sub1-1k pub2-sub2-16"}
BENCH_TMPDIR=${BENCH_TMPDIR:-/var/tmp}
OUT=${OUT:-$root/bench/results/$(date +%Y-%m-%d)-streams}
KEEP_RABBIT=${KEEP_RABBIT:-0}
READ_MB=${READ_MB:-0}

# Ports of our own, below 32768 (the ephemeral range) and away from every default.
PIGEON_STREAM=21552
PIGEON_AMQP=21672
PIGEON_MQTT=21883
RABBIT_STREAM=21553
RABBIT_AMQP=21673
RABBIT_DIST=21674
RABBIT_NODE=streamcompare@localhost

# The workloads: id, then the bench flags (the same for both brokers). The confirm window and
# frame batching are those of RabbitMQ's stream PerfTest scaled up for a million messages a
# second: 16-byte messages need many in flight while a confirm waits for the disk.
workloads() {
    cat <<EOF
pub1-sub1-16 -x 1 -y 1 -s 16 --max-inflight 100000 --batch 1000
pub1-sub1-16-subentry -x 1 -y 1 -s 16 --max-inflight 100000 --batch 100 --sub-entry 100
pub1-sub1-1k -x 1 -y 1 -s 1000 --max-inflight 20000 --batch 100
pub2-sub2-16 -x 2 -y 2 -s 16 --max-inflight 50000 --batch 1000
pub1-sub1-16-subentry-w400k -x 1 -y 1 -s 16 --max-inflight 400000 --batch 100 --sub-entry 100
EOF
}

log() { printf '%s stream_compare: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "$*"
    exit 1
}

wait_port() { # port, seconds
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    return 1
}

# --- the Pigeon binary ---------------------------------------------------------------------------
if [ -z "${PIGEON_BIN:-}" ]; then
    PIGEON_BIN=${CARGO_TARGET_DIR:-$root/target}/release/pigeon
    if [ ! -x "$PIGEON_BIN" ]; then
        log "building $PIGEON_BIN"
        (cd "$root" && cargo build --release -p pigeon)
    fi
fi
[ -x "$PIGEON_BIN" ] || die "PIGEON_BIN=$PIGEON_BIN is not an executable"
command -v rabbitmq-server >/dev/null || die "rabbitmq-server is not installed (apt-get install rabbitmq-server)"

# --- brokers -------------------------------------------------------------------------------------
work=$(mktemp -d "$BENCH_TMPDIR/stream-compare.XXXXXX")
chmod 755 "$work"
pigeon_pid=""
rabbit_pid=""
rabbit_env=()

cleanup() {
    local rc=$?
    if [ -n "$pigeon_pid" ]; then
        kill "$pigeon_pid" 2>/dev/null || true
        { wait "$pigeon_pid"; } 2>/dev/null || true
    fi
    if [ ${#rabbit_env[@]} -gt 0 ]; then
        # As the rabbitmq user: its Erlang cookie is the node's.
        (cd /var/lib/rabbitmq && su rabbitmq -s /bin/sh -c "rabbitmqctl -n $RABBIT_NODE stop") \
            >/dev/null 2>&1 || kill "$rabbit_pid" 2>/dev/null || true
        if [ -n "$rabbit_pid" ]; then
            local i
            for ((i = 0; i < 50; i++)); do
                kill -0 "$rabbit_pid" 2>/dev/null || break
                sleep 0.2
            done
            kill -9 "$rabbit_pid" 2>/dev/null || true
        fi
    fi
    if [ "$KEEP_RABBIT" = 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_pigeon() {
    local d=$work/pigeon
    mkdir -p "$d/data"
    cat >"$d/pigeon.toml" <<EOF
[server]
amqp_listen = "127.0.0.1:$PIGEON_AMQP"
mqtt_listen = "127.0.0.1:$PIGEON_MQTT"
stream_listen = "127.0.0.1:$PIGEON_STREAM"
management_listen = []
prometheus_listen = []
mqtt_ws_listen = []
data_dir = "$d/data"
mqtt_sys_interval = 0
EOF
    setsid "$PIGEON_BIN" --config "$d/pigeon.toml" --log warn >"$d/pigeon.log" 2>&1 &
    pigeon_pid=$!
    wait_port "$PIGEON_STREAM" 20 || die "Pigeon did not start: $(tail -5 "$d/pigeon.log")"
    log "pigeon running, pid $pigeon_pid"
}

start_rabbitmq() {
    local d=$work/rabbitmq
    mkdir -p "$d/mnesia" "$d/log"
    cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$RABBIT_AMQP
stream.listeners.tcp.1 = 127.0.0.1:$RABBIT_STREAM
stream.advertised_host = 127.0.0.1
stream.advertised_port = $RABBIT_STREAM
EOF
    # What `rabbitmq-plugins enable --offline rabbitmq_stream` writes, without booting a VM.
    echo '[rabbitmq_stream].' >"$d/enabled_plugins"
    chown -R rabbitmq:rabbitmq "$d"
    rabbit_env=(
        RABBITMQ_NODENAME="$RABBIT_NODE"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        RABBITMQ_NODE_PORT="$RABBIT_AMQP"
        RABBITMQ_DIST_PORT="$RABBIT_DIST"
        RABBITMQ_MNESIA_BASE="$d/mnesia"
        RABBITMQ_LOG_BASE="$d/log"
        RABBITMQ_FEATURE_FLAGS_FILE="$d/feature_flags"
        RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
        RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf"
        RABBITMQ_SERVER_START_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    )
    (cd /var/lib/rabbitmq && exec env "${rabbit_env[@]}" setsid su rabbitmq -s /bin/sh -c \
        "env ${rabbit_env[*]@Q} /usr/lib/rabbitmq/bin/rabbitmq-server") >"$d/start.log" 2>&1 &
    wait_port "$RABBIT_STREAM" 180 ||
        die "RabbitMQ did not start: $(tail -5 "$d/start.log"; tail -5 "$d"/log/*.log 2>/dev/null)"
    # The Erlang VM: the beam.smp whose environment names our node directory.
    local p
    for p in $(pgrep -x beam.smp); do
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "RABBITMQ_MNESIA_BASE=$d/mnesia"; then
            rabbit_pid=$p
        fi
    done
    [ -n "$rabbit_pid" ] || die "RabbitMQ's beam.smp process not found"
    log "rabbitmq $(dpkg-query -W -f '${Version}' rabbitmq-server) running, pid $rabbit_pid"
}

for b in $BROKERS; do
    case "$b" in
        pigeon) start_pigeon ;;
        rabbitmq) start_rabbitmq ;;
        *) die "unknown broker $b" ;;
    esac
done

# --- runs ----------------------------------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

url_for() {
    case "$1" in
        pigeon) echo "rabbitmq-stream://guest:guest@127.0.0.1:$PIGEON_STREAM/%2f" ;;
        rabbitmq) echo "rabbitmq-stream://guest:guest@127.0.0.1:$RABBIT_STREAM/%2f" ;;
    esac
}

pid_for() {
    case "$1" in
        pigeon) echo "$pigeon_pid" ;;
        rabbitmq) echo "$rabbit_pid" ;;
    esac
}

mkdir -p "$(dirname "$OUT")"
jsonl=$OUT.jsonl
: >"$jsonl"
while read -r id flags; do
    selected=0
    for w in $WORKLOADS; do
        # shellcheck disable=SC2254 # patterns on purpose
        case "$id" in $w) selected=1 ;; esac
    done
    [ "$selected" = 1 ] || continue
    for ((run = 1; run <= RUNS; run++)); do
        for b in $BROKERS; do
            pid=$(pid_for "$b")
            before=$(cpu_ticks "$pid")
            # shellcheck disable=SC2086 # the flags are words
            report=$("$PIGEON_BIN" bench stream --url "$(url_for "$b")" --json \
                --duration "$DURATION" --timeout 30 $flags 2>/dev/null) || true
            after=$(cpu_ticks "$pid")
            [ -n "$report" ] || report='{"errors":["no report"]}'
            cpu=$(awk -v a="$after" -v b="$before" -v t="$clk_tck" 'BEGIN {printf "%.2f", (a - b) / t}')
            load=$(cut -d' ' -f1 /proc/loadavg)
            printf '{"workload":"%s","broker":"%s","run":%d,"flags":"%s","broker_cpu_s":%s,"loadavg":%s,"report":%s}\n' \
                "$id" "$b" "$run" "$flags" "$cpu" "$load" "$report" >>"$jsonl"
            log "$id $b run $run: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("published/s", r.get("published_per_s"), "confirmed/s", r.get("confirmed_per_s"), "consumed/s", r.get("consumed_per_s"), "lost", r.get("lost"), "errors", r.get("errors"))' "$report")"
        done
    done
done < <(workloads)

# --- reading a filled stream back --------------------------------------------------------------
drop_caches() { sync && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null && echo true || echo false; }
if [ "$READ_MB" -gt 0 ]; then
    count=$((READ_MB * 1000)) # 1000-byte messages
    for b in $BROKERS; do
        stream=stream-compare-read
        log "$b: filling $stream with $count messages of 1000 B"
        "$PIGEON_BIN" bench stream --url "$(url_for "$b")" --stream "$stream" -y 0 -s 1000 \
            --count "$count" --max-inflight 20000 --batch 100 --timeout 60 --json >/dev/null 2>&1 ||
            log "$b: filling failed"
        for ((run = 1; run <= RUNS; run++)); do
            delete=()
            if [ "$run" = "$RUNS" ]; then delete=(--delete); fi
            cold=$(drop_caches)
            pid=$(pid_for "$b")
            before=$(cpu_ticks "$pid")
            report=$("$PIGEON_BIN" bench stream --url "$(url_for "$b")" --stream "$stream" -x 0 -y 1 \
                --offset first --timeout 60 --json "${delete[@]}" 2>/dev/null) || true
            after=$(cpu_ticks "$pid")
            [ -n "$report" ] || report='{"errors":["no report"]}'
            cpu=$(awk -v a="$after" -v b="$before" -v t="$clk_tck" 'BEGIN {printf "%.2f", (a - b) / t}')
            printf '{"workload":"read-%sMB","broker":"%s","run":%d,"flags":"-x 0 -y 1 --offset first","cold":%s,"broker_cpu_s":%s,"report":%s}\n' \
                "$READ_MB" "$b" "$run" "$cold" "$cpu" "$report" >>"$jsonl"
            log "read $b run $run (cold: $cold): $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("MB/s", r.get("mb_per_s"), "msg/s", r.get("messages_per_s"), "messages", r.get("messages"), "errors", r.get("errors"))' "$report")"
        done
    done
fi

python3 - "$jsonl" "$OUT.md" "$RUNS" "$DURATION" <<'EOF'
import json, statistics, sys
from collections import defaultdict
src, dst, runs, duration = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = [json.loads(line) for line in open(src)]
reads = [r for r in rows if r["workload"].startswith("read-")]
rows = [r for r in rows if not r["workload"].startswith("read-")]
by = defaultdict(list)
for r in rows:
    by[(r["workload"], r["broker"])].append(r)
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, unit=""):
    return "-" if x is None else f"{x:,.0f}{unit}"
out = [f"# Streams: Pigeon and RabbitMQ ({runs} runs of {duration} s each, medians)", "",
       "| workload | broker | published/s | confirmed/s | consumed/s | confirm p50 / p99 (ms) | end-to-end p50 / p99 (ms) | broker CPU s | broker µs/msg | bench CPU s | bench µs/msg | lost+dup | flags |",
       "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
workloads = []
for r in rows:
    if r["workload"] not in workloads:
        workloads.append(r["workload"])
for w in workloads:
    meds = {}
    for b in ["pigeon", "rabbitmq"]:
        rs = by.get((w, b))
        if not rs:
            continue
        rep = [r["report"] for r in rs]
        lat = lambda key, q: med([(x.get(key) or {}).get(q) for x in rep])
        ms = lambda v: "-" if v is None else f"{v / 1000:.1f}"
        pub, conf, cons = (med([x.get(k) for x in rep]) for k in ("published_per_s", "confirmed_per_s", "consumed_per_s"))
        meds[b] = cons
        bad = sum((x.get("lost") or 0) + (x.get("duplicates") or 0) for x in rep)
        errs = sum(len(x.get("errors") or []) for x in rep)
        # CPU per message published (each is also consumed by every consumer): the broker's
        # user+system seconds over the run, and the bench process's own.
        bench_cpu = [((x.get("bench_cpu") or {}).get("user_s", 0) + (x.get("bench_cpu") or {}).get("system_s", 0)) for x in rep]
        per_msg = lambda cpus: med([c * 1e6 / x["published"] for c, x in zip(cpus, rep) if x.get("published")])
        us = lambda v: "-" if v is None else f"{v:.3f}"
        out.append(f"| {w} | {b} | {fmt(pub)} | {fmt(conf)} | {fmt(cons)} | {ms(lat('confirm_latency_us', 'p50'))} / {ms(lat('confirm_latency_us', 'p99'))} | {ms(lat('latency_us', 'p50'))} / {ms(lat('latency_us', 'p99'))} | {med([r['broker_cpu_s'] for r in rs]):.1f} | {us(per_msg([r['broker_cpu_s'] for r in rs]))} | {med(bench_cpu):.1f} | {us(per_msg(bench_cpu))} | {bad}{' (' + str(errs) + ' errors)' if errs else ''} | `{rs[0]['flags']}` |")
    if meds.get("pigeon") and meds.get("rabbitmq"):
        out.append(f"| {w} | **Pigeon / RabbitMQ** | | | **{meds['pigeon'] / meds['rabbitmq']:.1f}x** | | | | | | | | |")
out += ["", "Every run, consumed/s (load average at the end of the run): " + "; ".join(
    f"{w} {b}: " + ", ".join(fmt(r['report'].get('consumed_per_s')) + (f" ({r['loadavg']})" if 'loadavg' in r else "") for r in by[(w, b)])
    for w in workloads for b in ["pigeon", "rabbitmq"] if (w, b) in by)]
if reads:
    out += ["", "Reading a filled stream from first (one consumer, `-x 0`; cold: page cache dropped before the read):", "",
            "| stream | broker | run | cold | MB/s | messages/s | seconds | broker CPU s |", "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in reads:
        rep = r["report"]
        out.append(f"| {r['workload']} | {r['broker']} | {r['run']} | {r['cold']} | {fmt(rep.get('mb_per_s'))} | {fmt(rep.get('messages_per_s'))} | {rep.get('seconds')} | {r['broker_cpu_s']} |")
open(dst, "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
log "wrote $OUT.md and $jsonl"
