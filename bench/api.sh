#!/usr/bin/env bash
# The management API with many queues (issue 11, item 3): starts a release Pigeon, declares
# QUEUES queues through the API (transient, so nothing waits on fsync), then times, RUNS
# times each, `GET /api/queues?page=1&page_size=100` (target: under 50 ms with 10,000
# queues) and a full `GET /api/queues` (target: under 1 s), plus the overview. Prints the
# fastest and the median of each, and the size of the full answer.
#
# A benchmark, not a test: run it by hand on a quiet machine.
#
#   bench/api.sh                 # 10,000 queues, 5 runs
#   QUEUES=100000 RUNS=3 bench/api.sh
#   PIGEON_BIN=path/to/pigeon bench/api.sh   # skip the build
#
# Needs curl and python3 (the declarations go over one kept-alive HTTP connection).
set -euo pipefail

QUEUES=${QUEUES:-10000}
RUNS=${RUNS:-5}
PORT=${PORT:-15699}
AMQP_PORT=${AMQP_PORT:-5699}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [[ -z "${PIGEON_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release -p pigeon >&2)
    PIGEON_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/pigeon"
fi

WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat >"$WORK/pigeon.toml" <<EOF
[server]
amqp_listen = "127.0.0.1:$AMQP_PORT"
mqtt_listen = []
mqtt_ws_listen = []
stream_listen = []
prometheus_listen = []
management_listen = "127.0.0.1:$PORT"
data_dir = "$WORK/data"
mqtt_sys_interval = 0
EOF
"$PIGEON_BIN" --config "$WORK/pigeon.toml" serve >"$WORK/log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    curl -sf -u guest:guest "http://127.0.0.1:$PORT/api/overview" >/dev/null && break
    sleep 0.1
done

python3 - "$PORT" "$QUEUES" <<'EOF'
import base64, http.client, json, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
auth = "Basic " + base64.b64encode(b"guest:guest").decode()
conn = http.client.HTTPConnection("127.0.0.1", port)
body = json.dumps({"durable": False, "auto_delete": False})
start = time.time()
for i in range(n):
    conn.request("PUT", f"/api/queues/%2F/bench-q-{i:06d}", body,
                 {"Authorization": auth, "Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    if r.status not in (201, 204):
        sys.exit(f"declare failed: {r.status}")
print(f"declared {n} queues in {time.time() - start:.1f} s")
EOF

# Times a GET RUNS times: "fastest median bytes" in ms.
time_get() {
    local path=$1 times=() bytes=0
    for _ in $(seq "$RUNS"); do
        read -r t b < <(curl -s -o /dev/null -u guest:guest -w '%{time_total} %{size_download}\n' \
            "http://127.0.0.1:$PORT$path")
        times+=("$t")
        bytes=$b
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v path="$path" -v bytes="$bytes" '
        { t[NR] = $1 * 1000 }
        END { printf "%-45s fastest %8.1f ms  median %8.1f ms  %10d bytes\n", path, t[1], t[int((NR + 1) / 2)], bytes }'
}

time_get "/api/queues?page=1&page_size=100"
time_get "/api/queues?page=50&page_size=100&sort=name&sort_reverse=true"
time_get "/api/queues?page=1&page_size=100&name=q-0099"
time_get "/api/queues"
time_get "/api/queues?disable_stats=true&enable_queue_totals=true"
time_get "/api/queues?page=1&page_size=100&sort=messages"
time_get "/api/overview"
echo "resident memory: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
