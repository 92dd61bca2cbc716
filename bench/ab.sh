#!/usr/bin/env bash
# A/B throughput of two Pigeon binaries, alternating runs (A B A B ...) on this machine, each
# run on a fresh broker with its own data directory and ports. Prints one line per run and the
# medians of consumed/s, published/s and the broker's CPU time per consumed message (user +
# system, from /proc: less sensitive than throughput to other processes sharing the machine)
# per binary and workload.
#
#   bench/ab.sh OLD_BIN NEW_BIN            # RUNS=3 DURATION=15
#   RUNS=5 WORKLOADS="amqp" bench/ab.sh A B
#   BENCH_ARGS="--rate 50000" bench/ab.sh A B   # below both brokers' capacity: compare CPU/msg
#
# Workloads: amqp = `pigeon bench -x 2 -y 2 -s 16` (transient, auto-ack);
#            mqtt = `pigeon bench mqtt --qos 1 -x 2 -y 2 -s 16`.
# The load generator is A's binary for every run, so that only the broker differs.
set -euo pipefail
A=${1:?usage: bench/ab.sh OLD_BIN NEW_BIN}
B=${2:?usage: bench/ab.sh OLD_BIN NEW_BIN}
RUNS=${RUNS:-3}
DURATION=${DURATION:-15}
WORKLOADS=${WORKLOADS:-"amqp mqtt"}
PORT_AMQP=${PORT_AMQP:-5791}
PORT_MQTT=${PORT_MQTT:-1991}
work=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/pigeon-ab.XXXXXX")
broker=""
cleanup() {
    if [ -n "$broker" ]; then kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Each side's configuration: the common listeners plus A_CONFIG / B_CONFIG lines (default: the
# management and Prometheus listeners off). A binary older than those keys needs A_CONFIG=""
# (it refuses keys it does not know); B_CONFIG='management_listen = "127.0.0.1:15999"' measures
# with the statistics sampler running.
for side in A B; do
    extra_var=${side}_CONFIG
    extra=${!extra_var-$'management_listen = []\nprometheus_listen = []'}
    cat > "$work/cfg-$side.toml" <<CFG
[server]
amqp_listen = ["127.0.0.1:$PORT_AMQP"]
mqtt_listen = ["127.0.0.1:$PORT_MQTT"]
mqtt_ws_listen = []
stream_listen = []
data_dir = "$work/data"
$(printf '%b' "$extra")
CFG
done

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "broker did not listen on $1" >&2
    return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # binary workload side -> "consumed_per_s published_per_s cpu_us_per_message"
    rm -rf "$work/data"
    "$1" serve -c "$work/cfg-$3.toml" --log warn >"$work/broker.log" 2>&1 &
    broker=$!
    wait_port "$PORT_AMQP"
    local json
    case $2 in
        amqp) json=$("$A" bench --url "amqp://guest:guest@127.0.0.1:$PORT_AMQP/%2f" \
                  -x 2 -y 2 -s 16 --duration "$DURATION" ${BENCH_ARGS:-} --json 2>/dev/null) ;;
        mqtt) json=$("$A" bench mqtt --url "mqtt://127.0.0.1:$PORT_MQTT" --qos 1 \
                  -x 2 -y 2 -s 16 --duration "$DURATION" ${BENCH_ARGS:-} --json 2>/dev/null) ;;
    esac
    local ticks; ticks=$(cpu_ticks "$broker")
    kill "$broker"; wait "$broker" 2>/dev/null || true; broker=""
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); t=int(sys.argv[2])/int(sys.argv[3])
print(r["consumed_per_s"], r["published_per_s"], round(t * 1e6 / max(r["consumed"], 1), 3))' \
        "$json" "$ticks" "$(getconf CLK_TCK)"
}

declare -A results
for w in $WORKLOADS; do
    for i in $(seq "$RUNS"); do
        for side in A B; do
            bin=$A; [ $side = B ] && bin=$B
            r=$(run "$bin" "$w" "$side")
            echo "$w run $i $side: consumed/s published/s cpu_us/msg = $r"
            results[$w$side]+="$r;"
        done
    done
done
for w in $WORKLOADS; do
    for side in A B; do
        python3 - "$w" "$side" "${results[$w$side]}" <<'PY'
import statistics, sys
w, side, rows = sys.argv[1], sys.argv[2], [r.split() for r in sys.argv[3].split(';') if r]
c = statistics.median(float(r[0]) for r in rows)
p = statistics.median(float(r[1]) for r in rows)
u = statistics.median(float(r[2]) for r in rows)
print(f"{w} {side}: median consumed/s {c:,.0f}  published/s {p:,.0f}  "
      f"broker CPU {u:.3f} us/message  ({len(rows)} runs)")
PY
    done
done
