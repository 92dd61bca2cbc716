#!/usr/bin/env bash
# bench/idle_compare.sh: broker RSS per idle connection, Pigeon beside Mosquitto, in one run
# (issue 12, item 5; docs/performance.md, "Idle connections").
#
# Every run starts a fresh broker (a second run on the same broker would reuse the memory the
# first one freed), waits 5 s, then `pigeon bench idle --hold $HOLD --broker-pid PID --json`
# opens the connections, holds them and closes them. Brokers alternate run by run so that the
# noise of a busy machine falls on both alike. Ports 29672-29674 and 29883-29884 on 127.0.0.1
# (not the defaults: brokers already running here are left alone).
#
# Environment:
#   PIGEON_BIN=target/release/pigeon   the broker and the bench (build with
#                                      `cargo build --release -p pigeon`: jemalloc, as shipped)
#   COUNTS="10000 19000"  connections per run (the machine's open-file limit is 20,000)
#   RUNS=3 HOLD=40        runs per count and broker, seconds the connections are held
#   BROKERS="pigeon mosquitto"; PROTOCOLS="mqtt amqp" (amqp: Pigeon only, one channel each)
#   BENCH_ARGS="--settle 5"  more arguments for `pigeon bench idle` (--settle N: half the
#                            connections, N s, then the rest: `slope_kib` is the cost of the
#                            second half alone, without the fixed costs the first one paid)
#   OUT=bench/results/idle-$(date +%F)  writes $OUT.jsonl (one bench report per line, with
#                                      "broker_name" added) and prints a table
set -euo pipefail
cd "$(dirname "$0")/.."
PIGEON_BIN=${PIGEON_BIN:-target/release/pigeon}
COUNTS=${COUNTS:-"10000 19000"}
RUNS=${RUNS:-3}
HOLD=${HOLD:-40}
BROKERS=${BROKERS:-"pigeon mosquitto"}
PROTOCOLS=${PROTOCOLS:-"mqtt amqp"}
BENCH_ARGS=${BENCH_ARGS:-}
OUT=${OUT:-bench/results/idle-$(date +%F)}
ulimit -n 20000 || ulimit -n "$(ulimit -Hn)"
: > "$OUT.jsonl"
WORK=$(mktemp -d /tmp/idle-compare.XXXX)
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

wait_port() {
  for _ in $(seq 200); do
    (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never answered" >&2
  return 1
}

start_pigeon() {
  rm -rf "$WORK/data"
  cat > "$WORK/pigeon.toml" <<EOT
[server]
data_dir = "$WORK/data"
amqp_listen = ["127.0.0.1:29672"]
mqtt_listen = ["127.0.0.1:29883"]
management_listen = ["127.0.0.1:29673"]
prometheus_listen = ["127.0.0.1:29674"]
mqtt_ws_listen = []
stream_listen = []
EOT
  "$PIGEON_BIN" serve --config "$WORK/pigeon.toml" > "$WORK/pigeon.log" 2>&1 &
  PID=$!
  wait_port 29883
}

start_mosquitto() {
  printf 'listener 29884 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\n' \
    > "$WORK/mosquitto.conf"
  mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
  PID=$!
  wait_port 29884
}

for n in $COUNTS; do
  for proto in $PROTOCOLS; do
    for run in $(seq "$RUNS"); do
      for broker in $BROKERS; do
        case "$broker/$proto" in
          pigeon/mqtt) start_pigeon; url=mqtt://127.0.0.1:29883 ;;
          pigeon/amqp) start_pigeon; url=amqp://guest:guest@127.0.0.1:29672/%2f ;;
          mosquitto/mqtt) start_mosquitto; url=mqtt://127.0.0.1:29884 ;;
          *) continue ;;
        esac
        sleep 5
        "$PIGEON_BIN" bench idle --protocol "$proto" --url "$url" --connections "$n" \
          --hold "$HOLD" --broker-pid "$PID" --json $BENCH_ARGS 2> "$WORK/bench.err" \
          | python3 -c 'import json,sys; j=json.load(sys.stdin); j["broker_name"]=sys.argv[1]; print(json.dumps(j))' "$broker" \
          >> "$OUT.jsonl"
        kill "$PID"; wait "$PID" 2>/dev/null || true
        echo "$broker $proto $n run $run done" >&2
      done
    done
  done
done

python3 - "$OUT.jsonl" <<'PY'
import json, sys
print("| broker | protocol | connections | KiB per connection: all open (headline) | end of hold | RssAnon, end of hold | slope (--settle) |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for line in open(sys.argv[1]):
    j = json.loads(line)
    b = j["broker"]
    print(f"| {j['broker_name']} | {j['protocol']} | {j['opened']} | {b['per_connection_kib']} "
          f"| {b['per_connection_end_of_hold_kib']} | {b['anon_per_connection_end_of_hold_kib']} "
          f"| {b.get('slope_kib') or '-'} |")
PY
