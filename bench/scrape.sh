#!/usr/bin/env bash
# Cost of a Prometheus scrape with many queues: starts a Pigeon (PIGEON_BIN, default
# target/release/pigeon) with its own ports and data directory, declares QUEUES (100,000)
# transient queues over AMQP (pika, from interop/.venv: interop/run.sh creates it), publishes
# one message into every 100th, then scrapes `/metrics/per-object` and `/metrics` RUNS (3)
# times each with curl, printing the time, the body size and the broker's RSS before and at
# its highest during the scrape (VmRSS sampled every 10 ms).
#
#   bench/scrape.sh
#   QUEUES=10000 PIGEON_BIN=/path/to/pigeon bench/scrape.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PIGEON_BIN:-$here/target/release/pigeon}
QUEUES=${QUEUES:-100000}
RUNS=${RUNS:-3}
PORT_AMQP=${PORT_AMQP:-5793}
PORT_PROM=${PORT_PROM:-15794}
PY=${PYTHON:-$here/interop/.venv/bin/python}
work=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/pigeon-scrape.XXXXXX")
broker=""
cleanup() {
    if [ -n "$broker" ]; then kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/cfg.toml" <<CFG
[server]
amqp_listen = ["127.0.0.1:$PORT_AMQP"]
mqtt_listen = []
mqtt_ws_listen = []
management_listen = []
prometheus_listen = ["127.0.0.1:$PORT_PROM"]
data_dir = "$work/data"
CFG
"$BIN" serve -c "$work/cfg.toml" --log warn >"$work/broker.log" 2>&1 &
broker=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT_AMQP") 2>/dev/null && break
    sleep 0.1
done

start=$(date +%s.%N)
"$PY" - "$PORT_AMQP" "$QUEUES" <<'PY'
import sys, pika
port, n = int(sys.argv[1]), int(sys.argv[2])
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
ch = conn.channel()
for i in range(n):
    ch.queue_declare(f"scrape-{i}", durable=False)
    if i % 100 == 0:
        ch.basic_publish("", f"scrape-{i}", b"x")
conn.close()
PY
echo "declared $QUEUES queues in $(echo "$(date +%s.%N) - $start" | bc) s"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$broker/status"; }
scrape() { # path
    local before peak now file=$work/peak
    before=$(rss)
    echo "$before" >"$file"
    (
        peak=$before
        while kill -0 "$broker" 2>/dev/null; do
            now=$(rss); [ "$now" -gt "$peak" ] && { peak=$now; echo "$peak" >"$file"; }
            sleep 0.01
        done
    ) &
    local sampler=$!
    local out
    out=$(curl -s -o "$work/body" -w '%{time_total} %{size_download}' "http://127.0.0.1:$PORT_PROM$1")
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
    peak=$(cat "$file")
    set -- "$1" $out
    printf '%-20s %6.3f s  %10d bytes  RSS %7d KiB -> peak %7d KiB (+%d KiB)\n' \
        "$1" "$2" "$3" "$before" "$peak" $((peak - before))
}
for _ in $(seq "$RUNS"); do
    scrape /metrics/per-object
    scrape /metrics
done
